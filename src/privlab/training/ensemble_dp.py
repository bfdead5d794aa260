"""DP-SGD for ensembles: the clip-and-noise step of :mod:`privlab.training.dp` on the
per-sample gradients of K models, and each model's noise multiplier and ε from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from privlab.training import dp
from privlab.training.ensemble_batches import PoissonBatches
from privlab.training.regimes.dp_sgd import DPSGD

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GradientCanary:
    """A gradient canary inserted into DP-SGD training (Nasr et al. 2023): wherever a model's
    Poisson batch draws the pool example ``index``, its per-sample gradient is ``vector``
    (a fixed direction, its norm above the clipping norm so that clipping brings it to C)
    instead of the example's own. Whether a model trains with the canary is its mask."""

    index: int
    vector: Params

    def insert(self, grads: Params, idx: torch.Tensor, valid: torch.Tensor) -> Params:
        """``grads`` (K×B×…) with the canary's gradient where ``idx`` (K×B) draws it."""
        carrier = (idx == self.index) & valid.bool()
        if not bool(carrier.any()):
            return grads
        return {
            n: torch.where(carrier.view(*carrier.shape, *[1] * (g.dim() - 2)), self.vector[n], g)
            for n, g in grads.items()
        }


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
    each model's batch and 0 for padding (all 0: the model's Poisson batch is empty, and its
    gradient is the noise alone). :func:`privlab.training.dp.clipped_sum` clips and sums each
    model's examples, :func:`~privlab.training.dp.add_noise` adds N(0, std_k²) to model k's
    sum (``noise_std``: one std for all or one per model) from ``generators[k]`` (None: no
    noise, for a model that takes no step), and the result is divided by
    ``expected_batch_size`` (K).
    """
    k_count = len(weight)
    summed, _ = dp.clipped_sum(grad_samples, max_grad_norm, weight=weight, batch_dims=2)
    stds = [float(noise_std)] * k_count if isinstance(noise_std, int | float) else list(noise_std)
    if len(stds) != k_count:
        raise ValueError(f"got {len(stds)} noise stds for {k_count} models")
    if any(s > 0 for s in stds):
        if generators is None or len(generators) != k_count:
            raise ValueError("noise needs one generator (or None) per model")
        rows = []
        for k, (gen, std) in enumerate(zip(generators, stds, strict=True)):
            row = {n: g[k] for n, g in summed.items()}
            rows.append(row if gen is None or std == 0 else dp.add_noise(row, std, gen))
        summed = {n: torch.stack([row[n] for row in rows]) for n in summed}
    scale = expected_batch_size.to(weight.dtype)
    return {n: g / scale.view(-1, *([1] * (g.dim() - 1))) for n, g in summed.items()}


def dp_settings(regime: DPSGD, batches: PoissonBatches, epochs: int) -> list[dict[str, Any]]:
    """σ, δ, q per model, as DPSGD.prepare sets them."""
    settings = []
    for n, q in zip(batches.n, batches.sample_rate, strict=True):
        delta = regime.delta if regime.delta is not None else 1.0 / n**1.1
        sigma = regime.noise_multiplier
        if sigma is None:
            assert regime.target_epsilon is not None
            sigma = dp.noise_multiplier_for(
                regime.target_epsilon, delta, q, epochs=epochs, accountant=regime.accountant
            )
        settings.append({"delta": delta, "sample_rate": q, "sigma": float(sigma)})
    return settings


def dp_summary(regime: DPSGD, setting: dict[str, Any], steps: int) -> dict[str, Any]:
    """Model k's ``privacy`` block: the keys and values of ``DPSGD.summary()``."""
    return dp.privacy_summary(
        accountant=regime.accountant,
        noise_multiplier=setting["sigma"],
        sample_rate=setting["sample_rate"],
        steps=steps,
        delta=setting["delta"],
        max_grad_norm=regime.max_grad_norm,
    )
