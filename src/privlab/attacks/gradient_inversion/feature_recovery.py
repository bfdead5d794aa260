"""The input features of a model's last linear layer, recovered from its gradient (Liu et al.
2025's feature reconstruction; used by :mod:`~privlab.attacks.gradient_inversion.feature_matching`).

**Feature recovery.** For a model whose logits come from a last ``nn.Linear`` layer
z = W·h + b, write p_i = softmax(W h_i + b), g_i = p_i − e_{y_i} ∈ R^C, Γ = [g_1 … g_B]
(C × B) and H = [h_1 … h_B] (d × B). The mean cross-entropy's last-layer gradients are

    ∂L/∂W = (1/B)·Γ Hᵀ,        ∂L/∂b = (1/B)·Γ 1,

i.e. B·[∂L/∂W | ∂L/∂b] = Γ [Hᵀ | 1] (b is the weight of a constant input 1). All of it is
computed in float64.

* Least squares. Given Γ, Hᵀ = Γ⁺·B·∂L/∂W, exact when Γ has full column rank. Every column of
  Γ sums to zero (1ᵀp_i = 1ᵀe_{y_i} = 1), so rank Γ ≤ C − 1: at most C − 1 examples (or
  classes, below) can be told apart. Γ depends on H through p_i, hence the fixed point
  H ← ½·(H + Γ(H)⁺·B·∂L/∂W) from p_i = softmax(b), stopped when the relative step falls below
  ``_TOL`` (or after ``_MAX_ITER`` steps), keeping the iterate with the smallest relative
  residual ‖Γ [Hᵀ | 1] − B·[∂L/∂W | ∂L/∂b]‖: ∂L/∂b enters through that misfit (it constrains
  the p_i, not H). Undamped, the separation t of two same-label examples maps to t*²/t and
  oscillates; the average converges (it is Newton's step on t² = t*²). Row i of the result
  goes with the i-th label passed in; an undefended gradient is inverted to float precision.
* Repeated labels. Two examples of one class enter Γ only through p_i − p_k:
  (p_i − e)h_iᵀ + (p_k − e)h_kᵀ = (p̄ − e)(h_i + h_k)ᵀ + ½(p_i − p_k)(h_i − h_k)ᵀ, and
  |p_i − p_k| ~ 10⁻² near initialisation, so their split is a weak, second-order signal. The
  per-class means are solved first, with one column n_c·(softmax(W h̄_c + b) − e_c) per class
  (well conditioned; p at the mean feature stands for the mean of p, a second-order
  approximation). To first order the split terms read A·D Dᵀ (D the within-class differences,
  A = J_softmax·W), which fixes D only up to D → D·Q with Q orthogonal: harmless for a single
  pair (Q = ±1 swaps two interchangeable examples) but a real ambiguity for two pairs or a
  triple. So only a single repeated pair is split, from an asymmetric start (the symmetric
  point is itself a fixed point), and the split is kept only if it cuts the per-class residual
  by ``_SPLIT_GAIN``: an undefended gradient does (10⁻⁸ against 10⁻³), pruning or noise does
  not. Otherwise the attack matches each class by the sum Σ_{i∈class} φ(x̂_i).
* Pruning. A zero entry whose row and column hold non-zero ones is taken as pruned (whole
  zero columns and rows are exact: a dead ReLU unit, a class of probability 0): its true
  value is only known to lie within ±τ, τ the smallest magnitude kept in the layer (a valid
  bound for global and per-tensor magnitude pruning). Each step fits it to the prediction
  clipped to [−τ, τ] (a censored least squares), which beats both fitting zeros and dropping
  such entries.
* Error estimate. Taking the misfit of ∂L/∂W as white noise, σ̂² = (RSS + n_pruned·τ²/12) /
  ((C − K)·d) per entry (K columns; a pruned entry counts as uniform on ±τ/2, pruned entries
  being mostly far below τ), the estimate ĥ_k has covariance σ̂²·[(ΓᵀΓ)⁻¹]_kk·I_d, whence a
  relative error ε_k = (d·σ̂²·[(ΓᵀΓ)⁻¹]_kk)^½ / ‖ĥ_k‖. On MNIST MLP/CNN pilots it is within
  a factor 1.5 of the true error under Gaussian noise and 90 % pruning, and under-estimates
  it by up to 2× at 99 % pruning.
* Fallbacks. B = 1 without a label: h = ∂L/∂W[j] / ∂L/∂b_j for the row j with the largest
  |∂L/∂b_j| (exact). C or more distinct labels (only possible for B ≥ C) leave Γ rank-deficient
  even per class: each example gets the row ratio ĥ_i = ∂L/∂W[y_i] / ∂L/∂b_{y_i}, biased
  towards the others' features (row y_i is (1/B)·Σ_k g_{k,y_i} h_k; exact only for B = 1),
  with the residual as its error; the same estimate replaces a least-squares one that is not
  finite or fits worse. B ≥ C with fewer classes: per-class sums only.
* FedAvg (``local_steps`` > 1): the pseudo-gradient is rescaled by B/local_steps (each example
  is visited about local_steps·b/B times, each time with weight 1/b) and solved as a gradient
  at θ₀, ignoring the drift of θ over the local steps and uneven visit counts: an
  approximation, close only while the client's steps are small.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from privlab.federated.observation import GradientObservation

_MAX_ITER = 200  # fixed-point iterations
_TOL = 1e-12  # relative step at which the fixed point stops
_RCOND = 1e-10  # relative cut-off of Γ's singular values in the least squares
_SPLIT_KICK = 0.1  # relative size of the asymmetric start of a repeated label's members
_SPLIT_GAIN = 0.1  # a split must cut the per-class solution's residual at least tenfold


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last module (in ``named_modules`` order) that has parameters; it must be an
    ``nn.Linear`` with a bias (the feature recovery divides by the bias gradient)."""
    last: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = (name, module)
    if last is None or not isinstance(last[1], nn.Linear):
        kind = "no parameters" if last is None else type(last[1]).__name__
        raise ValueError(
            f"feature matching needs a model whose last layer is an nn.Linear; got {kind}"
        )
    name, layer = last[0], last[1]
    if layer.bias is None:
        raise ValueError("feature matching needs the last nn.Linear to have a bias")
    return name, layer


def _pname(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


# ------------------------------------------------------------------------- feature recovery


@dataclasses.dataclass(frozen=True)
class FeatureEstimate:
    """Last-layer inputs recovered from an update; row i goes with ``labels[i]``.

    ``groups`` partitions the rows. A group of several rows (examples sharing a label whose
    features could not be told apart) only has its sum known, and each of its rows holds the
    group's mean. ``errors`` is the estimated relative error ‖ĥ − h‖/‖h‖ of each row (of its
    group's mean), from the least-squares misfit (module docstring). ``method`` is
    ``"ratio"`` (B = 1 without a label: exact, error 0 assumed), ``"least_squares"`` or
    ``"rows"`` (the row-ratio fallback, whose error is taken as the residual);
    ``residual`` is the relative misfit of the last layer's equations, NaN for ``"ratio"``.
    """

    features: torch.Tensor  # B × d, float32
    groups: tuple[tuple[int, ...], ...]
    errors: torch.Tensor  # B, float64
    method: str
    residual: float


@dataclasses.dataclass(frozen=True)
class _LastLayer:
    """The last layer (float64) and its observed gradients rescaled to sums over examples,
    ``observed`` = [Σ_i g_i h_iᵀ | Σ_i g_i] = Γ [Hᵀ | 1] (b weighs a constant input 1).

    ``zeroed`` marks the entries taken as pruned (:func:`_pruned_entries`): their true value is
    only known to lie in [−bound, bound], ``bound`` being the smallest kept magnitude."""

    weight: torch.Tensor  # C × d
    bias: torch.Tensor  # C
    observed: torch.Tensor  # C × (d + 1)
    zeroed: torch.Tensor  # C × (d + 1), bool
    bound: float

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def grad_weight(self) -> torch.Tensor:
        return self.observed[:, :-1]

    def targets(self, prediction: torch.Tensor) -> torch.Tensor:
        """The observation, with each zeroed entry replaced by the prediction clipped to the
        bound: the nearest value the defence could have zeroed."""
        clipped = prediction.clamp(-self.bound, self.bound)
        return torch.where(self.zeroed, clipped, self.observed)


def _last_layer(model: nn.Module, obs: GradientObservation) -> _LastLayer:
    """The last layer, its gradients × B / local_steps (see the module docstring)."""
    name, layer = final_linear(model)
    assert layer.bias is not None  # final_linear checks it
    scale = obs.batch_size / obs.local_steps
    gw = obs.gradients[_pname(name, "weight")].detach().double()
    gb = obs.gradients[_pname(name, "bias")].detach().double().reshape(-1, 1)
    observed = scale * torch.cat([gw, gb], 1)
    zeroed = _pruned_entries(observed)
    kept = observed[observed != 0].abs()
    return _LastLayer(
        weight=layer.weight.detach().double(),
        bias=layer.bias.detach().double(),
        observed=observed,
        zeroed=zeroed,
        bound=float(kept.min()) if bool(zeroed.any()) else 0.0,
    )


def _pruned_entries(observed: torch.Tensor) -> torch.Tensor:
    """Zero entries whose row and column both hold non-zero ones. A whole zero column (a unit
    that is 0 for every example, e.g. a dead ReLU) or row (a class whose p underflows to 0)
    is an exact zero of the undefended gradient; a zero among non-zeros is pruning."""
    nonzero = observed != 0
    return ~nonzero & nonzero.any(1, keepdim=True) & nonzero.any(0, keepdim=True)


def _coefficients(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Γ (C × K): column k is counts_k·(softmax(W h_k + b) − e_{labels_k})."""
    probs = torch.softmax(feats @ layer.weight.T + layer.bias, dim=1)
    onehot = nn.functional.one_hot(labels, layer.num_classes).double()
    return ((probs - onehot) * counts[:, None]).T


def _prediction(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Γ and Γ [Hᵀ | 1], the gradient that features ``feats`` (K × d) would give."""
    gamma = _coefficients(layer, feats, labels, counts)
    ones = torch.ones(len(feats), 1, dtype=feats.dtype)
    return gamma, gamma @ torch.cat([feats, ones], 1)


def _residual(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> float:
    """‖Γ [Hᵀ | 1] − targets‖ / ‖observed‖ (zeroed entries within the bound fit exactly),
    ∞ when not finite or when nothing was observed."""
    _, prediction = _prediction(layer, feats, labels, counts)
    scale = float(layer.observed.norm())
    value = float((prediction - layer.targets(prediction)).norm()) / scale if scale else math.inf
    return value if math.isfinite(value) else math.inf


def _least_squares(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Γ(H)⁺·targets: the features that best explain ∂L/∂W with the probabilities (and the
    zeroed entries' clipped predictions) of ``feats``."""
    gamma, prediction = _prediction(layer, feats, labels, counts)
    target = layer.targets(prediction)[:, :-1]
    return torch.linalg.lstsq(gamma, target, rcond=_RCOND, driver="gelsd").solution


def _relative_errors(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Estimated ‖ĥ_k − h_k‖/‖ĥ_k‖ (K): the misfit of ∂L/∂W as white noise of variance
    σ̂² = (RSS + n_zeroed·bound²/12) / ((C − K)·d) per entry (a zeroed entry counting as
    uniform on ±bound/2) gives Cov(ĥ_k) = σ̂²·[(ΓᵀΓ)⁻¹]_kk·I_d (module docstring)."""
    gamma, prediction = _prediction(layer, feats, labels, counts)
    classes, k = gamma.shape
    dim = feats.shape[1]
    misfit = float((prediction - layer.targets(prediction))[:, :-1].pow(2).sum())
    censored = int(layer.zeroed[:, :-1].sum()) * layer.bound**2 / 12
    sigma2 = (misfit + censored) / ((classes - k) * dim)
    spread = (dim * sigma2 * torch.linalg.pinv(gamma.T @ gamma).diagonal().clamp_min(0)).sqrt()
    norms = feats.norm(dim=1)
    return torch.where(norms > 0, spread / norms.clamp_min(1e-300), math.inf)


def _fixed_point(
    layer: _LastLayer, labels: torch.Tensor, counts: torch.Tensor, start: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Damped iteration H ← ½·(H + Γ(H)⁺ Σ g hᵀ) from ``start`` (K × d): the iterate with the
    smallest residual, and that residual."""
    feats = start
    best = (start, _residual(layer, start, labels, counts))
    for _ in range(_MAX_ITER):
        new = 0.5 * (feats + _least_squares(layer, feats, labels, counts))
        step = float((new - feats).abs().max() / new.abs().max().clamp_min(1e-300))
        feats = new
        res = _residual(layer, feats, labels, counts)
        if res < best[1]:
            best = (feats, res)
        if not step > _TOL:  # converged, or NaN: keep the best iterate
            break
    return best


def _label_groups(labels: torch.Tensor) -> tuple[tuple[int, ...], ...]:
    """Indices of equal labels, groups in order of first appearance."""
    rows: dict[int, list[int]] = {}
    for i, c in enumerate(labels.tolist()):
        rows.setdefault(int(c), []).append(i)
    return tuple(tuple(r) for r in rows.values())


def _expand(means: torch.Tensor, groups: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """B × d: each example gets its group's row of ``means``."""
    batch = sum(len(g) for g in groups)
    feats = torch.empty(batch, means.shape[1], dtype=means.dtype)
    for mean, rows in zip(means, groups, strict=True):
        feats[list(rows)] = mean
    return feats


def _split_start(
    layer: _LastLayer, grouped: FeatureEstimate, groups: tuple[tuple[int, ...], ...]
) -> torch.Tensor:
    """Members of a group at its mean, moved apart by seeded random directions (centred in the
    group, of relative size ``_SPLIT_KICK``) in the span of Σ g hᵀ's top right singular
    vectors, which holds every h_i."""
    feats = grouped.features.double()
    basis = torch.linalg.svd(layer.grad_weight, full_matrices=False).Vh[: len(feats)]
    gen = torch.Generator().manual_seed(0)
    for rows in groups:
        if len(rows) == 1:
            continue
        idx = list(rows)
        noise = torch.randn(len(idx), len(basis), generator=gen, dtype=torch.float64, device="cpu")
        kick = noise.to(basis.device) @ basis
        kick = kick - kick.mean(0)
        kick = kick / kick.norm(dim=1, keepdim=True).clamp_min(1e-300)
        feats[idx] += _SPLIT_KICK * feats[idx[0]].norm() * kick
    return feats


def _splittable(groups: tuple[tuple[int, ...], ...], num_classes: int) -> bool:
    """Only a single repeated pair is split (module docstring): with more than one
    within-class difference, their first-order signal leaves them free to mix."""
    sizes = sorted(len(g) for g in groups)
    return sizes[-1] == 2 and sizes[-2:-1] != [2] and sum(sizes) < num_classes


def _row_estimate(layer: _LastLayer, rows: list[int]) -> torch.Tensor:
    """ĥ = ∂W[j] / ∂b_j for each row j (zero where ∂b_j = 0): exact for one example."""
    gw, gb = layer.grad_weight, layer.observed[:, -1]
    return torch.stack([gw[j] / gb[j] if gb[j] != 0 else torch.zeros_like(gw[j]) for j in rows])


def _batch_estimate(layer: _LastLayer, labels: torch.Tensor) -> FeatureEstimate:
    """Per-class least squares, split of a repeated pair, fallbacks (module docstring)."""
    groups = _label_groups(labels)
    singles = tuple((i,) for i in range(len(labels)))
    ones = torch.ones(len(labels), dtype=torch.float64)
    rows = _row_estimate(layer, labels.tolist())
    res = _residual(layer, rows, labels, ones)
    fallback = FeatureEstimate(rows.float(), singles, torch.full_like(ones, res), "rows", res)
    if len(groups) >= layer.num_classes:
        return fallback
    estimate = _solve(layer, labels[[g[0] for g in groups]], groups)
    if _splittable(groups, layer.num_classes):
        split = _solve(layer, labels, singles, start=_split_start(layer, estimate, groups))
        if split.residual < _SPLIT_GAIN * estimate.residual:
            estimate = split
    if not (estimate.residual <= res and bool(estimate.features.isfinite().all())):
        return fallback
    return estimate


def _solve(
    layer: _LastLayer,
    labels: torch.Tensor,
    groups: tuple[tuple[int, ...], ...],
    start: torch.Tensor | None = None,
) -> FeatureEstimate:
    """The fixed point for one column per group (``labels``: one per group), from ``start``
    (K × d) or from p = softmax(b)."""
    counts = torch.tensor([float(len(g)) for g in groups], dtype=torch.float64)
    if start is None:
        zero = torch.zeros(len(groups), layer.weight.shape[1], dtype=torch.float64)
        start = _least_squares(layer, zero, labels, counts)
    means, res = _fixed_point(layer, labels, counts, start)
    errors = _relative_errors(layer, means, labels, counts)
    return FeatureEstimate(
        _expand(means, groups).float(),
        groups,
        _expand(errors[:, None], groups)[:, 0],
        "least_squares",
        res,
    )


def recover_batch_features(
    model: nn.Module, obs: GradientObservation, labels: torch.Tensor | None = None
) -> FeatureEstimate:
    """The client's last-layer inputs from the last layer's gradients (module docstring).

    B > 1 needs the batch's labels (any order, repeats allowed): row i of the result goes with
    ``labels[i]``. B = 1 without a label: the exact row ratio.
    """
    layer = _last_layer(model, obs)
    if labels is None:
        if obs.batch_size > 1:
            raise ValueError("recovering features of a batch needs its labels")
        row = int(torch.argmax(layer.observed[:, -1].abs()))
        feats = _row_estimate(layer, [row]).float()
        return FeatureEstimate(
            feats, ((0,),), torch.zeros(1, dtype=torch.float64), "ratio", math.nan
        )
    labels = labels.detach().long().reshape(-1).cpu()
    if len(labels) != obs.batch_size:
        raise ValueError(f"need {obs.batch_size} labels, got {len(labels)}")
    if labels.min() < 0 or labels.max() >= layer.num_classes:
        raise ValueError(f"labels must lie in 0..{layer.num_classes - 1}")
    return _batch_estimate(layer, labels)


def recover_features(
    model: nn.Module, obs: GradientObservation, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """B × d features, row i for ``labels[i]`` (see :func:`recover_batch_features`; a repeated
    label's members that could not be split each get their group's mean)."""
    return recover_batch_features(model, obs, labels).features
