"""Gradient quantisation / compression of the final update (a defence Liu et al. list among
gradient perturbations; QSGD, Alistarh et al. 2017; signSGD, Bernstein et al. 2018).

``mode="stochastic"`` / ``"nearest"``: every tensor G with scale s = max|G| is mapped to the
2^b uniform levels −s + i·Δ, i = 0 … 2^b − 1, Δ = 2s/(2^b − 1), the scale being sent along
(per-tensor scale). Stochastic rounding picks the level above with probability equal to the
fractional position between the two neighbouring levels, so E[Q(G)] = G (unbiased) and the
error of each entry is below Δ; nearest rounding is deterministic and biased. With b = 1 the
two levels are ±s (stochastic: an unbiased random sign).

``mode="sign"`` (signSGD): sign(G) times the tensor's mean |G| (the scale keeps the update's
size, so the server's learning rate means the same); ``bits`` is unused.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch

from privlab.federated.defences.base import DEFENCES, Defence, Gradients, require_generator

QuantisationMode = Literal["stochastic", "nearest", "sign"]


@DEFENCES.register("quantisation")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantisation(Defence):
    """Uniform b-bit quantisation per tensor (stochastic or nearest rounding), or signSGD."""

    name: ClassVar[str] = "quantisation"
    bits: int = 8
    mode: QuantisationMode = "stochastic"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be an integer ≥ 1, got bits={self.bits!r}")
        if self.bits > 32:
            raise ValueError(f"bits must be ≤ 32 (float32 updates), got bits={self.bits}")
        if self.mode not in ("stochastic", "nearest", "sign"):
            raise ValueError(
                f"mode must be 'stochastic', 'nearest' or 'sign', got mode={self.mode!r}"
            )

    @property
    def levels(self) -> int:
        """Distinct values a quantised tensor can take (sign: ±mean|G|, plus 0 for exact
        zeros)."""
        return 2 if self.mode == "sign" else 2**self.bits

    def quantise(self, g: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One tensor, quantised (computed in float64, returned in g's dtype)."""
        t = g.detach().double()
        if self.mode == "sign":
            return (torch.sign(t) * t.abs().mean()).to(g.dtype)
        scale = float(t.abs().max()) if t.numel() else 0.0
        if scale == 0.0:
            return torch.zeros_like(g)
        top = self.levels - 1
        step = 2 * scale / top
        position = ((t + scale) / step).clamp(0, top)  # in level units, 0 … 2^b − 1
        if self.mode == "nearest":
            index = position.round()
        else:
            gen = require_generator(generator, "stochastic quantisation")
            low = position.floor()
            up = torch.rand(t.shape, generator=gen, dtype=torch.float64) < (position - low)
            index = (low + up.double()).clamp(0, top)
        return (-scale + index * step).to(g.dtype)

    def transform(
        self, gradients: Gradients, *, generator: torch.Generator | None = None
    ) -> Gradients:
        return {n: self.quantise(g, generator) for n, g in gradients.items()}
