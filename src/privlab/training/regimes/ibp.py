"""IBP verified training (Gowal et al. 2018; Song et al. Eq. 13, "IBP-Based Verify").

Loss = κ·CE(F(x), y) + (1 − κ)·CE(ẑ, y), where ẑ are the worst-case logits from interval
bounds over B_ε(x): lower bound for the true class, upper bounds for the others. Following
Gowal et al., ε ramps linearly from 0 to its target and κ from 1 to ``kappa`` after a warm-up.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regime import Regime
from privlab.verify import interval_bounds, worst_case_logits


@REGIMES.register("ibp")
@dataclasses.dataclass(frozen=True, kw_only=True)
class IntervalBoundTraining(Regime):
    """Verified training with interval bounds: natural CE mixed with worst-case-logit CE."""

    name = "ibp"
    verifier: ClassVar[str] = "ibp"
    eps: float = 0.1
    kappa: float = 0.5  # final weight of the natural loss
    warmup: float = 0.1  # fraction of epochs with natural training only
    ramp: float = 0.5  # fraction of epochs over which ε and κ reach their targets
    _schedule: dict[str, float] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.kappa <= 1.0:
            raise ValueError(f"kappa must be in [0, 1], got {self.kappa}")
        if self.warmup < 0 or self.ramp < 0 or self.warmup + self.ramp > 1:
            raise ValueError("warmup and ramp are fractions of training with warmup + ramp ≤ 1")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        progress = (epoch / epochs - self.warmup) / self.ramp if self.ramp > 0 else 1.0
        t = min(max(progress, 0.0), 1.0) if epoch / epochs >= self.warmup else 0.0
        # progress t ∈ [0, 1] of the ramp (subclasses schedule further weights by it)
        self._schedule.update(progress=t, eps=t * self.eps, kappa=1.0 - t * (1.0 - self.kappa))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = self._schedule.get("eps", self.eps)
        kappa = self._schedule.get("kappa", self.kappa)
        logits = model(x)
        natural = F.cross_entropy(logits, y)
        if eps == 0 or kappa == 1.0:
            return natural
        robust = self.robust_loss(model, x, y, eps, logits.shape[1])
        return kappa * natural + (1.0 - kappa) * robust

    def robust_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int
    ) -> torch.Tensor:
        """The verified loss over B_ε(x) (subclasses swap the verifier and the loss here)."""
        lower, upper = interval_bounds(model, x, eps, self.clip)
        return F.cross_entropy(worst_case_logits(lower, upper, y), y)
