"""Negative label smoothing with the replication code's schedule (NegLS, Struppek et al. 2024;
SPEC §1, defence D6).

Loss: (1 − α_e)·CE + α_e·(−(1/C) Σ_j log p_j), α = −0.05. With epochs e counted from 1 of E,
the replication code uses α_e = 0 for e < 50, α·(e + 1 − 50)/(E − 50) for 50 ≤ e < 75 and α
from epoch 75 on, for E = 100. Here 50 and 75 are the fractions ``start`` = 0.5 and ``full`` =
0.75 of E, so shorter runs keep the shape.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regimes.label_smoothing import LabelSmoothing, smoothed_cross_entropy


def neg_ls_alpha(alpha: float, epoch: int, epochs: int, start: float, full: float) -> float:
    """α at 1-based ``epoch`` of ``epochs`` (the replication code's schedule, in fractions)."""
    begin, end = math.ceil(start * epochs), math.ceil(full * epochs)
    if epoch < begin:
        return 0.0
    if epoch < end:
        return alpha * (epoch + 1 - begin) / max(epochs - begin, 1)
    return alpha


@REGIMES.register("neg_ls")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NegativeLabelSmoothing(LabelSmoothing):
    """NegLS: label smoothing with α = −0.05, switched on half-way through training."""

    name = "neg_ls"
    alpha: float = -0.05
    start: float = 0.5  # fraction of epochs trained with plain cross-entropy
    full: float = 0.75  # fraction of epochs after which α is at its final value
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.start <= self.full <= 1.0:
            raise ValueError("need 0 ≤ start ≤ full ≤ 1 (fractions of training)")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self._state["alpha"] = neg_ls_alpha(self.alpha, epoch + 1, epochs, self.start, self.full)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return smoothed_cross_entropy(model(x), y, self._state.get("alpha", self.alpha))
