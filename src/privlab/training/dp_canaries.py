"""White-box DP auditing of privlab's DP-SGD step with gradient canaries (Nasr et al. 2021,
2023: the adversary who inserts a gradient and sees every update, as a federated server does).

The audited code is the one DP-SGD path every privlab DP trainer shares (the ensembles' DP
step, :func:`privlab.training.ensemble_dp.dp_noisy_gradients`, over
:func:`privlab.training.dp.clipped_sum` and :func:`~privlab.training.dp.add_noise`; the DP
heads and the federated ``dp`` defence use the same two functions). In each of ``runs``
independent runs a canary is in (probability ½) or out; for ``steps`` steps an "in" canary
joins the step's Poisson batch with the sample rate q, as a gradient of norm
``canary_norm``·C along a fixed direction u (above the clipping norm C, so a step that fails
to clip shows it). Every other example's contribution is known to this worst-case adversary
and left out; what it observes is each step's noisy sum. Its score is the log-likelihood
ratio of the projections x_t = ⟨sum_t, u⟩ / C under "in" (the mixture (1 − q)·N(0, σ²) +
q·N(1, σ²) per step) against "out" (N(0, σ²)), the most powerful test for a correct step.
The runs' (in, score) pairs give the many-run ε lower bound of
:func:`privlab.metrics.dp_audit.many_run_epsilon_lower_bound`, to set beside the accountant's
ε for the same σ, C, q, steps and δ: a correct implementation never proves more than its
accountant claims; noise too small, no clipping or an accountant that under-counts does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.data.bundle import Split
from privlab.metrics import dp_audit
from privlab.training import dp
from privlab.training.ensemble_dp import GradientCanary, dp_noisy_gradients
from privlab.training.ensembles import train_ensemble
from privlab.training.loop import TrainSpec
from privlab.training.regimes.dp_sgd import DPSGD


def claimed_epsilon(summaries: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """The largest accountant ε of DP runs and the largest δ (None: no DP claim): every run
    is (ε, δ)-DP at those, which is what an audit over all of them tests."""
    epsilons = [float(s["epsilon"]) for s in summaries if s.get("epsilon") is not None]
    deltas = [float(s["delta"]) for s in summaries if s.get("delta") is not None]
    return (max(epsilons) if epsilons else None), (max(deltas) if deltas else None)


def many_run_result(
    method: str, bound: dp_audit.EpsilonLowerBound, claimed: float | None = None, **extra: Any
) -> dict[str, Any]:
    """A many-run audit's report entry: ``method``, ``extra``, the claim and whether the
    bound breaks it, and the bound's fields (its own threshold method as
    ``threshold_chosen``)."""
    fields = bound.as_dict()
    fields["threshold_chosen"] = fields.pop("method")  # split / union / fixed
    claim = (
        {} if claimed is None else {"claimed_epsilon": claimed, "violated": bound.epsilon > claimed}
    )
    return {"method": method, **extra, **claim, **fields}


def canary_observations(
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    sample_rate: float,
    steps: int,
    runs: int,
    canary_norm: float = 10.0,
    uses_per_step: int = 1,
    dim: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(included, x): each run's canary bit and its runs × steps × uses projections, from
    the DP step run on every run at once (the runs are the ensemble's models). A sampled
    step has ``uses_per_step`` noisy steps with the canary in all (a FedAvg round's local
    steps over the round's batch)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(dim, generator=gen, dtype=torch.float64)
    direction /= direction.norm()
    canary = canary_norm * max_grad_norm * direction
    included = torch.rand(runs, generator=gen) < 0.5
    noise = [torch.Generator().manual_seed(seed * 1_000_003 + 1 + k) for k in range(runs)]
    grads = {"w": canary.expand(runs, 1, dim).clone()}
    ones = torch.ones(runs, dtype=torch.float64)
    x = torch.empty(runs, steps, uses_per_step, dtype=torch.float64)
    for t in range(steps):
        sampled = included & (torch.rand(runs, generator=gen) < sample_rate)
        for j in range(uses_per_step):
            noisy = dp_noisy_gradients(
                grads,
                sampled.to(torch.float64).unsqueeze(1),
                max_grad_norm=max_grad_norm,
                expected_batch_size=ones,
                noise_std=noise_multiplier * max_grad_norm,
                generators=noise,
            )
            x[:, t, j] = noisy["w"] @ direction / max_grad_norm
    return included.numpy(), x.numpy()


def log_likelihood_ratio(x: np.ndarray, noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Σ_t log((1 − q) + q·exp(Σ_j (2x_tj − 1) / (2σ²))) per run: "in" against "out"
    (``x``: runs × steps × uses)."""
    z = ((2.0 * x - 1.0) / (2.0 * noise_multiplier**2)).sum(axis=2)
    if sample_rate >= 1.0:
        return np.asarray(z.sum(axis=1))
    terms = np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + z)
    return np.asarray(terms.sum(axis=1))


def audit_dp_sgd(
    privacy: dict[str, Any],
    *,
    runs: int = 1_000,
    confidence: float = 0.95,
    canary_norm: float = 10.0,
    uses_per_step: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """The gradient-canary audit of a DP-SGD ``privacy`` block (σ, C, q, steps, δ, ε as
    :func:`privlab.training.dp.privacy_summary` writes it): the lower bound beside the
    accountant's ε (recomputed for the same settings if the block has none).
    ``uses_per_step``: noisy steps per sampled step (FedAvg's local steps)."""
    sigma, clip = float(privacy["noise_multiplier"]), float(privacy["max_grad_norm"])
    q, steps, delta = float(privacy["sample_rate"]), int(privacy["steps"]), float(privacy["delta"])
    if sigma <= 0:
        raise ValueError("a DP-SGD audit needs a positive noise multiplier")
    included, x = canary_observations(
        noise_multiplier=sigma, max_grad_norm=clip, sample_rate=q, steps=steps, runs=runs,
        canary_norm=canary_norm, uses_per_step=uses_per_step, seed=seed,
    )  # fmt: skip
    scores = log_likelihood_ratio(x, sigma, q)
    bound = dp_audit.many_run_epsilon_lower_bound(
        included, scores, delta=delta, confidence=confidence, seed=seed
    )
    claimed = privacy.get("epsilon")
    if claimed is None:
        claimed = dp.epsilon(sigma, q, steps, delta, privacy.get("accountant", "rdp"))
    return many_run_result(
        "gradient canaries, many runs (Nasr et al. 2021)", bound, float(claimed),
        runs=runs, steps=steps, uses_per_step=uses_per_step,
    )  # fmt: skip


def quiet_direction(model: nn.Module, data: Split, batches: int = 32) -> dict[str, torch.Tensor]:
    """A Dirac canary's direction (Nasr et al. 2023): the one trainable coordinate the data
    moves least (smallest summed |gradient| over mini-batches of ``data`` at the model's
    initial weights; a weight fed by a pixel that is always 0 never moves at all), so the
    canary's trace in the weights is not drowned by the other examples'."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    moved = {n: torch.zeros_like(p) for n, p in trainable.items()}
    for xb, yb in zip(data.x.chunk(batches), data.y.chunk(batches), strict=True):
        loss = nn.functional.cross_entropy(model(xb), yb)
        for (n, _), g in zip(trainable.items(), torch.autograd.grad(loss, list(trainable.values())),
                             strict=True):  # fmt: skip
            moved[n] += g.abs()
    flat = torch.cat([m.flatten() for m in moved.values()])
    where = int(flat.argmin())
    direction = {n: torch.zeros_like(p).detach() for n, p in trainable.items()}
    for d in direction.values():
        if where < d.numel():
            d.view(-1)[where] = 1.0
            break
        where -= d.numel()
    return direction


def _projection(model: nn.Module, direction: dict[str, torch.Tensor]) -> float:
    params = dict(model.named_parameters())
    return float(sum((params[n].detach().cpu() * d).sum() for n, d in direction.items()))


def audit_dp_training(
    make_model: Callable[[int], nn.Module],
    members: Split,
    regime: DPSGD,
    spec: TrainSpec,
    *,
    runs: int = 200,
    canary_norm: float = 10.0,
    confidence: float = 0.95,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """The white-box audit inside real training: ``runs`` models trained by the ensembles'
    DP-SGD on ``members`` plus one carrier example whose gradient is the canary (in the pool
    of half the runs, by coin), every step, noise, clip, sampling and count as training does
    them. The auditor sees each run's initial and final weights; its score is how far they
    moved against the canary's direction (a Dirac canary on the coordinate the data moves
    least, :func:`quiet_direction`). The runs' (in, score) pairs give the many-run
    bound, set beside the largest ε the runs' accountant reports."""
    n = len(members)
    pool = Split(torch.cat([members.x, members.x[:1]]), torch.cat([members.y, members.y[:1]]))
    included = np.random.default_rng(seed).random(runs) < 0.5
    masks = np.ones((runs, n + 1), dtype=bool)
    masks[:, n] = included
    seeds = [seed * 10_007 + k for k in range(runs)]
    direction = quiet_direction(make_model(seeds[0]), members)
    start = np.array([_projection(make_model(s), direction) for s in seeds])
    canary = GradientCanary(n, {k: canary_norm * regime.max_grad_norm * v
                                for k, v in direction.items()})  # fmt: skip
    results = train_ensemble(
        make_model, pool, masks, regime, spec, seeds=seeds, device=device, gradient_canary=canary
    )
    scores = start - np.array([_projection(r.model, direction) for r in results])
    claimed, delta = claimed_epsilon([r.summary for r in results])
    assert claimed is not None and delta is not None  # DP-SGD runs report both
    bound = dp_audit.many_run_epsilon_lower_bound(
        included, scores, delta=delta, confidence=confidence, seed=seed
    )
    return many_run_result(
        "gradient canary in training, many runs (Nasr et al. 2023)", bound, claimed, runs=runs
    )
