"""Label smoothing with positive or negative α (Szegedy et al.; NegLS, Struppek et al. 2024)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regime import Regime


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """−Σ_i q_i log F(x)_i with q = (1 − α)·onehot(y) + α/K. α < 0 gives negative smoothing."""
    k = logits.shape[1]
    target = F.one_hot(y, k).to(logits.dtype) * (1.0 - alpha) + alpha / k
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@REGIMES.register("label_smoothing")
@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelSmoothing(Regime):
    """Cross-entropy against smoothed targets; ``alpha`` may be negative (NegLS)."""

    name = "label_smoothing"
    alpha: float = 0.1

    def __post_init__(self) -> None:
        if not -1.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (-1, 1), got {self.alpha}")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return smoothed_cross_entropy(model(x), y, self.alpha)
