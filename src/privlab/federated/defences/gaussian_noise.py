"""Additive Gaussian noise on the final update, without clipping (Liu et al. 2025's
"DP-style additive Gaussian noise", Prop. 2.1: M = G + N(0, σ²I); SPEC §5.6 sweeps σ as a
multiple of ‖G‖).

Every entry gets independent N(0, std²) noise, with std absolute or, when ``relative``, std
times the update's norm ‖G‖₂ over all parameters. Without a clipping bound this carries no
formal (ε, δ) guarantee; use the "dp" defence for one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from privlab.federated.defences.base import DEFENCES, Defence, Gradients, require_generator


@DEFENCES.register("gaussian")
@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianNoise(Defence):
    """G + N(0, std²·I) on the final update (std × ‖G‖ when ``relative``)."""

    name: ClassVar[str] = "gaussian"
    std: float = 0.01
    relative: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"std must be a finite value ≥ 0, got std={self.std}")

    def transform(
        self, gradients: Gradients, *, generator: torch.Generator | None = None
    ) -> Gradients:
        std = self.std
        if self.relative:
            std *= math.sqrt(sum(float(g.double().pow(2).sum()) for g in gradients.values()))
        if std == 0:
            return {n: g.detach().clone() for n, g in gradients.items()}
        gen = require_generator(generator, "gaussian")
        return {
            n: g.detach() + std * torch.randn(g.shape, generator=gen, dtype=g.dtype)
            for n, g in gradients.items()
        }
