"""DP-SGD for ensembles: Opacus' clip-and-noise step on per-sample gradients of K models, and
each model's noise multiplier and ε from Opacus' own accountants."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from privlab.training.ensemble_batches import PoissonBatches
from privlab.training.regimes.dp_sgd import DPSGD

Params = dict[str, torch.Tensor]


def dp_noisy_gradients(
    grad_samples: Params,
    weight: torch.Tensor,
    *,
    max_grad_norm: float,
    expected_batch_size: torch.Tensor,
    noise_std: float | Sequence[float] = 0.0,
    generators: Sequence[torch.Generator | None] | None = None,
) -> Params:
    """One DP-SGD gradient per model from per-sample gradients, as Opacus' DPOptimizer.

    ``grad_samples[name]`` is K×B×(parameter shape); ``weight`` K×B is 1 for the examples of
    each model's batch and 0 for padding. Each sample's gradient is scaled by
    min(1, C / (‖g‖₂ + 1e-6)), the norm taken over all parameters; the scaled gradients are
    summed per model, N(0, std_k²) noise is added to model k's sum (``noise_std``: one std
    for all or one per model) drawn from ``generators[k]`` (None: no noise for model k, as
    for a model that skips the step), and the result is divided by ``expected_batch_size``
    (K).
    """
    names = list(grad_samples)
    k_count = len(weight)
    per_param = [grad_samples[n].flatten(2).norm(2, dim=2) for n in names]  # each K×B
    norms = torch.stack(per_param, dim=2).norm(2, dim=2)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * weight
    summed = {n: torch.einsum("kb,kb...->k...", factor, grad_samples[n]) for n in names}
    stds = [float(noise_std)] * k_count if isinstance(noise_std, int | float) else list(noise_std)
    if len(stds) != k_count:
        raise ValueError(f"got {len(stds)} noise stds for {k_count} models")
    if any(s > 0 for s in stds):
        if generators is None or len(generators) != k_count:
            raise ValueError("noise needs one generator (or None) per model")
        noise = {n: torch.zeros_like(g) for n, g in summed.items()}
        for k, (gen, std) in enumerate(zip(generators, stds, strict=True)):
            if gen is None or std == 0:
                continue
            for n in names:  # Opacus' order: one draw per parameter
                ref = noise[n][k]
                noise[n][k] = torch.normal(0.0, std, ref.shape, generator=gen, device=ref.device)
        summed = {n: summed[n] + noise[n] for n in names}
    scale = expected_batch_size.to(weight.dtype)
    return {n: g / scale.view(-1, *([1] * (g.dim() - 1))) for n, g in summed.items()}


def dp_settings(regime: DPSGD, batches: PoissonBatches, epochs: int) -> list[dict[str, Any]]:
    """σ, δ, q per model, as DPSGD.prepare / Opacus' make_private(_with_epsilon) set them."""
    from opacus.accountants.utils import get_noise_multiplier

    @functools.cache
    def sigma_for(q: float, delta: float) -> float:
        if regime.noise_multiplier is not None:
            return float(regime.noise_multiplier)
        with warnings.catch_warnings():  # as DPSGD.prepare: Opacus' notes are not for users
            warnings.simplefilter("ignore")
            return float(
                get_noise_multiplier(
                    target_epsilon=regime.target_epsilon,  # type: ignore[arg-type]
                    target_delta=delta,
                    sample_rate=q,
                    epochs=epochs,
                    accountant=regime.accountant,
                )
            )

    settings = []
    for n, q in zip(batches.n, batches.sample_rate, strict=True):
        delta = regime.delta if regime.delta is not None else 1.0 / n**1.1
        settings.append({"delta": delta, "sample_rate": q, "sigma": sigma_for(q, delta)})
    return settings


@functools.lru_cache(maxsize=1024)
def dp_epsilon(
    accountant: str, sigma: float, sample_rate: float, steps: int, delta: float
) -> float:
    """ε after ``steps`` DP-SGD steps, from a fresh Opacus accountant (as PrivacyEngine's)."""
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [(sigma, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def dp_summary(regime: DPSGD, setting: dict[str, Any], steps: int) -> dict[str, Any]:
    sigma, q, delta = setting["sigma"], setting["sample_rate"], setting["delta"]
    return {
        "mechanism": "dp_sgd",
        "accountant": regime.accountant,
        "epsilon": dp_epsilon(regime.accountant, sigma, q, int(steps), delta),
        "delta": float(delta),
        "noise_multiplier": float(sigma),
        "max_grad_norm": regime.max_grad_norm,
        "sample_rate": float(q),
        "steps": int(steps),
    }
