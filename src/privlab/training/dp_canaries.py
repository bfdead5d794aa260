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
from typing import Any

import numpy as np
import torch

from privlab.metrics import dp_audit
from privlab.training import dp
from privlab.training.ensemble_dp import dp_noisy_gradients


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
    result = bound.as_dict()
    result["threshold_chosen"] = result.pop("method")  # split / union / fixed
    claimed = privacy.get("epsilon")
    if claimed is None:
        claimed = dp.epsilon(sigma, q, steps, delta, privacy.get("accountant", "rdp"))
    return {
        "method": "gradient canaries, many runs (Nasr et al. 2021)",
        "runs": runs,
        "steps": steps,
        "uses_per_step": uses_per_step,
        "claimed_epsilon": float(claimed),
        "violated": bound.epsilon > float(claimed),
        **result,
    }
