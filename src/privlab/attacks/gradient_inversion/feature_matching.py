"""Gradient inversion with feature matching (Liu et al. 2025, §"feature reconstruction", Fig. 4).

**Feature recovery.** For a model whose logits come from a last ``nn.Linear`` layer
z = W·h + b, write p_i = softmax(W h_i + b), g_i = p_i − e_{y_i} ∈ R^C, Γ = [g_1 … g_B]
(C × B) and H = [h_1 … h_B] (d × B). The mean cross-entropy's last-layer gradients are

    ∂L/∂W = (1/B)·Γ Hᵀ,        ∂L/∂b = (1/B)·Γ 1

(b is the weight of a constant input 1, so [∂L/∂W | ∂L/∂b] = (1/B)·Γ [Hᵀ | 1]).

* B = 1: every row j with ∂L/∂b_j ≠ 0 gives h = ∂L/∂W[j] / ∂L/∂b_j exactly (the row with the
  largest |∂L/∂b_j| is used), without the label.
* B > 1: given Γ, Hᵀ = Γ⁺·B·∂L/∂W is the least-squares solution, exact when Γ has full column
  rank. Every column of Γ sums to zero (1ᵀp_i = 1ᵀe_{y_i} = 1), so rank Γ ≤ C − 1 and at most
  C − 1 examples can be told apart. Γ depends on H through p_i, hence the fixed point
  H ← ½·(H + Γ(H)⁺·B·∂L/∂W) from p_i = softmax(b), in float64, until the step is below a
  tolerance; the iterate with the smallest residual ‖Γ[Hᵀ | 1] − B·[∂L/∂W | ∂L/∂b]‖ (relative)
  is kept, so ∂L/∂b enters as the extra column of that misfit. The damping matters for
  repeated labels (below): undamped, the separation t of two same-label examples maps to
  t*²/t and oscillates; averaged, it converges.
* Repeated labels. Two examples of one class enter Γ only through p_i − p_k:
  (p_i − e)h_iᵀ + (p_k − e)h_kᵀ = (p̄ − e)(h_i + h_k)ᵀ + ½(p_i − p_k)(h_i − h_k)ᵀ, and
  |p_i − p_k| ~ 10⁻² near initialisation, so their split is a weak, second-order signal. The
  per-class means are solved first, one column n_c·(softmax(W h̄_c + b) − e_c) per distinct
  label (well conditioned; it takes p at the mean feature for the mean of p, a second-order
  approximation). The split is then tried from an asymmetric start (the symmetric point is
  itself a fixed point) and kept only if its residual is below ``_SPLIT_GAIN`` times the
  grouped one, which an undefended gradient allows (residual ~10⁻⁸) and any pruning or noise
  prevents. Otherwise the group's members are matched together: the attack compares
  Σ_{i∈group} φ(x̂_i) with the recovered sum. Members of a class are interchangeable, so a
  split is exact up to their order.
* Fallbacks: C or more distinct labels (possible only when B ≥ C) leave Γ rank-deficient
  even per class, so each example gets the row-ratio estimate ĥ_i = ∂L/∂W[y_i] / ∂L/∂b_{y_i}
  (biased towards the others' features: row y_i is (1/B)·Σ_k g_{k,y_i} h_k); the same estimate
  replaces a least-squares solution that is not finite or fits worse. With B ≥ C (but fewer
  than C classes) only the per-class means are solved. Pruned (zeroed) gradient entries are
  fitted as zeros, which beats dropping them: the entries pruned are the small ones.
* FedAvg (``local_steps`` > 1): the pseudo-gradient is rescaled by B/local_steps (each example
  is visited about local_steps·b/B times with weight 1/b) and solved as one gradient at θ₀,
  ignoring the drift of θ over the local steps: an approximation.

**Inversion.** The inputs are found Inverting-Gradients style (signed Adam, step-wise lr
decay, projection onto the value range, restarts) with the objective

    w_grad·(1 − cos(∇_θ L(x̂, ŷ), G)) + λ_TV·TV(x̂) + λ_feat·Σ_g (n_g/B)·‖Σ_{i∈g} φ(x̂_i) − ŝ_g‖² / ‖ŝ_g‖²,

φ being the input of the last Linear (read with a forward hook), g running over the groups of
the recovered features (single examples once split) and ŝ_g their recovered sum. The feature
term only uses the last layer, so defences that spare it (pruning of small entries usually
keeps the large last-layer gradients) leave it intact: the paper's "with feature matching".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call

from privlab.attacks.gradient_inversion.base import (
    GradientInversionAttack,
    GradientInversionResult,
    MatchingLoss,
    gradient_matching_loss,
    hard_label_loss,
    model_parameters,
    observed_tensors,
    random_images,
    simulated_update,
    total_variation,
)
from privlab.federated.observation import GradientObservation
from privlab.registry import ATTACKS

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
    group's mean. ``method`` is ``"ratio"`` (B = 1, exact), ``"least_squares"`` or ``"rows"``
    (the row-ratio fallback); ``residual`` is the relative misfit of the last layer's
    equations (see the module docstring), NaN for ``"ratio"``.
    """

    features: torch.Tensor  # B × d, float32
    groups: tuple[tuple[int, ...], ...]
    method: str
    residual: float


@dataclasses.dataclass(frozen=True)
class _LastLayer:
    """The last layer (float64) and its observed gradients rescaled to sums over examples:
    ``grad_weight`` ≈ Σ_i g_i h_iᵀ = Γ Hᵀ and ``grad_bias`` ≈ Σ_i g_i = Γ 1."""

    weight: torch.Tensor  # C × d
    bias: torch.Tensor  # C
    grad_weight: torch.Tensor  # C × d
    grad_bias: torch.Tensor  # C

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def observed(self) -> torch.Tensor:
        """[Σ g_i h_iᵀ | Σ g_i]: the gradient of [W | b] (b weighs a constant input 1)."""
        return torch.cat([self.grad_weight, self.grad_bias[:, None]], 1)


def _last_layer(model: nn.Module, obs: GradientObservation) -> _LastLayer:
    """The last layer, its gradients × B / local_steps (see the module docstring)."""
    name, layer = final_linear(model)
    assert layer.bias is not None  # final_linear checks it
    scale = obs.batch_size / obs.local_steps
    return _LastLayer(
        weight=layer.weight.detach().double(),
        bias=layer.bias.detach().double(),
        grad_weight=scale * obs.gradients[_pname(name, "weight")].detach().double(),
        grad_bias=scale * obs.gradients[_pname(name, "bias")].detach().double().reshape(-1),
    )


def _coefficients(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Γ (C × K): column k is counts_k·(softmax(W h_k + b) − e_{labels_k})."""
    probs = torch.softmax(feats @ layer.weight.T + layer.bias, dim=1)
    onehot = nn.functional.one_hot(labels, layer.num_classes).double()
    return ((probs - onehot) * counts[:, None]).T


def _residual(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> float:
    """‖Γ [Hᵀ | 1] − [Σ g hᵀ | Σ g]‖ / ‖[Σ g hᵀ | Σ g]‖, ∞ when not finite."""
    gamma = _coefficients(layer, feats, labels, counts)
    augmented = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], 1)
    observed = layer.observed()
    scale = observed.norm().clamp_min(torch.finfo(torch.float64).tiny)
    value = float((gamma @ augmented - observed).norm() / scale)
    return value if math.isfinite(value) else math.inf


def _least_squares(
    layer: _LastLayer, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Γ(H)⁺ Σ g hᵀ: the features that best explain ∂L/∂W with the probabilities of ``feats``."""
    gamma = _coefficients(layer, feats, labels, counts)
    return torch.linalg.lstsq(gamma, layer.grad_weight, rcond=_RCOND, driver="gelsd").solution


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
    layer: _LastLayer, means: torch.Tensor, groups: tuple[tuple[int, ...], ...]
) -> torch.Tensor:
    """Members of a group at its mean, moved apart by seeded random directions (centred in the
    group, of relative size ``_SPLIT_KICK``) in the span of Σ g hᵀ's top right singular
    vectors, which holds every h_i."""
    feats = _expand(means, groups)
    basis = torch.linalg.svd(layer.grad_weight, full_matrices=False).Vh[: len(feats)]
    gen = torch.Generator().manual_seed(0)
    for mean, rows in zip(means, groups, strict=True):
        if len(rows) == 1:
            continue
        kick = torch.randn(len(rows), len(basis), generator=gen, dtype=torch.float64) @ basis
        kick = kick - kick.mean(0)
        kick = kick / kick.norm(dim=1, keepdim=True).clamp_min(1e-300)
        feats[list(rows)] += _SPLIT_KICK * mean.norm() * kick
    return feats


def _row_estimate(layer: _LastLayer, rows: list[int]) -> torch.Tensor:
    """ĥ = ∂W[j] / ∂b_j for each row j (zero where ∂b_j = 0): exact for one example."""
    gw, gb = layer.grad_weight, layer.grad_bias
    return torch.stack([gw[j] / gb[j] if gb[j] != 0 else torch.zeros_like(gw[j]) for j in rows])


def _batch_estimate(layer: _LastLayer, labels: torch.Tensor) -> FeatureEstimate:
    """B > 1 (module docstring): per-class least squares, split of repeated labels, fallbacks."""
    groups = _label_groups(labels)
    singles = tuple((i,) for i in range(len(labels)))
    ones = torch.ones(len(labels), dtype=torch.float64)
    rows = _row_estimate(layer, labels.tolist())
    fallback = FeatureEstimate(
        rows.float(), singles, "rows", _residual(layer, rows, labels, ones)
    )
    if len(groups) >= layer.num_classes:
        return fallback
    group_labels = labels[[g[0] for g in groups]]
    counts = torch.tensor([float(len(g)) for g in groups], dtype=torch.float64)
    zero = torch.zeros(len(groups), layer.weight.shape[1], dtype=torch.float64)
    start = _least_squares(layer, zero, group_labels, counts)  # p = softmax(b)
    means, res = _fixed_point(layer, group_labels, counts, start)
    estimate = FeatureEstimate(_expand(means, groups).float(), groups, "least_squares", res)
    if len(groups) < len(labels) < layer.num_classes:
        split, split_res = _fixed_point(layer, labels, ones, _split_start(layer, means, groups))
        if split_res < _SPLIT_GAIN * res:
            estimate = FeatureEstimate(split.float(), singles, "least_squares", split_res)
    if not (estimate.residual <= fallback.residual and bool(estimate.features.isfinite().all())):
        return fallback
    return estimate


def recover_batch_features(
    model: nn.Module, obs: GradientObservation, labels: torch.Tensor | None = None
) -> FeatureEstimate:
    """The client's last-layer inputs from the last layer's gradients (module docstring).

    B = 1 needs no label (exact ratio). B > 1 needs the batch's labels (any order, repeats
    allowed): row i of the result goes with ``labels[i]``.
    """
    layer = _last_layer(model, obs)
    if obs.batch_size == 1:
        row = int(torch.argmax(layer.grad_bias.abs()))
        return FeatureEstimate(_row_estimate(layer, [row]).float(), ((0,),), "ratio", math.nan)
    if labels is None:
        raise ValueError("recovering features of a batch needs its labels")
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


# --------------------------------------------------------------------------------- attack


@ATTACKS.register("feature_matching")
@dataclasses.dataclass(kw_only=True)
class FeatureMatching(GradientInversionAttack):
    """Inverting Gradients + a last-layer feature-matching term (Liu et al. 2025, Fig. 4)."""

    name: ClassVar[str] = "feature_matching"
    iterations: int = 500
    restarts: int = 2
    lr: float = 0.1
    tv: float = 1e-2  # λ_TV
    feature_weight: float = 1.0  # λ_feat
    gradient_weight: float = 1.0  # w_grad; 0 = feature matching alone
    loss: MatchingLoss = "cosine"
    signed: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1:
            raise ValueError("iterations and restarts must be ≥ 1")
        if not self.lr > 0 or self.tv < 0:
            raise ValueError(f"need lr > 0 and tv ≥ 0, got lr={self.lr}, tv={self.tv}")
        if self.feature_weight < 0 or self.gradient_weight < 0:
            raise ValueError("feature_weight and gradient_weight must be ≥ 0")
        if self.feature_weight == 0 and self.gradient_weight == 0:
            raise ValueError("at least one of feature_weight and gradient_weight must be > 0")

    def milestones(self) -> list[int]:
        return [round(self.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]

    def _invert(
        self,
        model: nn.Module,
        obs: GradientObservation,
        input_shape: tuple[int, ...],
        num_classes: int,
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        _, layer = final_linear(model)
        labels = self.labels_for(model, obs, recover=True)
        assert labels is not None
        feature_loss = _feature_loss(recover_batch_features(model, obs, labels))
        loss_fn = hard_label_loss(labels)
        observed = observed_tensors(model, obs)
        params = model_parameters(model)
        captured: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            captured["h"] = inputs[0]

        def features(x: torch.Tensor) -> torch.Tensor:
            functional_call(model, params, (x,))
            return captured["h"].reshape(len(x), -1)

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            total = torch.zeros(())
            match = torch.zeros(())
            if self.gradient_weight:
                match = gradient_matching_loss(
                    simulated_update(model, params, x, loss_fn, obs), observed, self.loss
                )
                total = total + self.gradient_weight * match
            if self.feature_weight:
                total = total + self.feature_weight * feature_loss(features(x))
            if self.tv:
                total = total + self.tv * total_variation(x)
            return total, match

        gen = torch.Generator().manual_seed(seed)
        lo, hi = value_range
        handle = layer.register_forward_pre_hook(hook)
        try:
            best: tuple[float, torch.Tensor, list[float]] | None = None
            for _ in range(self.restarts):
                x = random_images(obs.batch_size, input_shape, value_range, gen)
                x.requires_grad_(True)
                opt = torch.optim.Adam([x], lr=self.lr)
                sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones(), gamma=0.1)
                history: list[float] = []
                for _ in range(self.iterations):
                    opt.zero_grad()
                    total, _match = objective(x)
                    (grad,) = torch.autograd.grad(total, [x])
                    x.grad = grad.sign() if self.signed else grad
                    opt.step()
                    sched.step()
                    with torch.no_grad():
                        x.clamp_(lo, hi)
                    history.append(float(total.detach()))
                final_x = x.detach().clone().requires_grad_(True)
                final = float(objective(final_x)[0].detach())
                if not math.isfinite(final):
                    final = math.inf
                if best is None or final < best[0]:
                    best = (final, final_x.detach(), history)
        finally:
            handle.remove()
        assert best is not None
        loss, images, history = best
        return GradientInversionResult(
            images=images, labels=labels, history=history, matching_loss=loss
        )


def _feature_loss(estimate: FeatureEstimate) -> Any:
    """φ (B × d) ↦ Σ_g (n_g/B)·‖Σ_{i∈g} φ_i − ŝ_g‖² / ‖ŝ_g‖² over the estimate's groups;
    groups whose recovered sum is zero (a fully pruned layer) are left out."""
    feats = estimate.features
    batch = len(feats)
    assign = torch.zeros(len(estimate.groups), batch)
    for g, rows in enumerate(estimate.groups):
        assign[g, list(rows)] = 1.0
    target = assign @ feats
    scale = target.pow(2).sum(1)
    weight = assign.sum(1) / batch * (scale > 0)
    scale = scale.clamp_min(torch.finfo(scale.dtype).tiny)

    def loss(phi: torch.Tensor) -> torch.Tensor:
        return (weight * (assign @ phi - target).pow(2).sum(1) / scale).sum()

    return loss
