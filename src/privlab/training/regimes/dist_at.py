"""Distributional adversarial training (Sinha et al. 2018), "dist-based" in Song et al. Eq. 10.

The inner problem is the Lagrangian max_x̃ ℓ(F(x̃), y) − γ·c(x̃, x), solved by multi-step
gradient ascent; Song et al. use the L∞ cost, Sinha et al. the squared L2 cost. The model is
then trained on x̃ (α = 0). No ε-ball: the penalty γ sets how far examples move.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regime import Regime, attack_mode


def _cost(delta: torch.Tensor, kind: str) -> torch.Tensor:
    flat = delta.flatten(1)
    if kind == "linf":
        return flat.abs().amax(dim=1)
    if kind == "l2sq":
        return flat.pow(2).sum(dim=1)
    raise ValueError(f"unknown cost {kind!r}; use 'linf' or 'l2sq'")


@REGIMES.register("dist_at")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionalAdversarialTraining(Regime):
    """Train on x̃ = argmax ℓ(x̃, y) − γ·‖x̃ − x‖ (approximately, by ``steps`` ascent steps)."""

    name = "dist_at"
    gamma: float = 2.0
    steps: int = 15
    step_size: float = 0.05
    cost: Literal["linf", "l2sq"] = "linf"
    #: budget used only to *evaluate* the model (adv accuracy, I_A); training has no ball
    eps: float = 0.1

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.detach().clone()
        lo, hi = self.clip
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            objective = F.cross_entropy(model(x_adv), y, reduction="none") - self.gamma * _cost(
                x_adv - x, self.cost
            )
            (grad,) = torch.autograd.grad(objective.sum(), x_adv)
            # Normalised ascent: the step length does not depend on the loss scale.
            scale = grad.flatten(1).abs().amax(dim=1).clamp_min(1e-12)
            grad = grad / scale.view(-1, *([1] * (x.dim() - 1)))
            x_adv = (x_adv.detach() + self.step_size * grad).clamp(lo, hi)
        return x_adv.detach()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            x_adv = self.perturb(model, x, y)
        return F.cross_entropy(model(x_adv), y)
