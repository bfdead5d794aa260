"""Gradient pruning (Zhu et al. 2019, §5; Liu et al. 2025, Prop. 3.4 and Fig. 2–3).

The client zeroes all but the largest-magnitude entries of its update: with pruning rate p it
keeps k = max(1, round((1 − p)·n)) of n entries (p = 0.99 keeps 1 %). ``scope="global"``
(default) ranks the entries of the whole update together, as Liu et al. prune "by magnitude
across the update"; ``scope="layer"`` keeps the fraction within every parameter tensor
separately (DLG's per-tensor percentile, at least one entry per tensor). Ties at the threshold
are broken by ``torch.topk``, so exactly k entries survive.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch

from privlab.federated.defences.base import DEFENCES, Defence, Gradients


def _keep_top(flat: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[flat.abs().topk(keep, sorted=False).indices] = True  # unsorted: 2–4× faster
    return torch.where(mask, flat, torch.zeros_like(flat))


@DEFENCES.register("pruning")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Pruning(Defence):
    """Magnitude pruning of the final update: keep the largest (1 − p) fraction, zero the rest."""

    name: ClassVar[str] = "pruning"
    p: float = 0.9  # fraction of entries zeroed, in [0, 1)
    scope: Literal["global", "layer"] = "global"

    def __post_init__(self) -> None:
        if not 0 <= self.p < 1:
            raise ValueError(f"pruning rate p must be in [0, 1), got p={self.p}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got scope={self.scope!r}")

    def keep_count(self, n: int) -> int:
        """Entries kept out of n: max(1, round((1 − p)·n))."""
        return max(1, round((1 - self.p) * n))

    def transform(
        self, gradients: Gradients, *, generator: torch.Generator | None = None
    ) -> Gradients:
        if self.scope == "layer":
            return {
                n: _keep_top(g.detach().flatten(), self.keep_count(g.numel())).reshape(g.shape)
                for n, g in gradients.items()
            }
        names = list(gradients)
        flat = torch.cat([gradients[n].detach().flatten() for n in names])
        kept = _keep_top(flat, self.keep_count(flat.numel()))
        parts = kept.split([gradients[n].numel() for n in names])
        return {n: part.reshape(gradients[n].shape) for n, part in zip(names, parts, strict=True)}
