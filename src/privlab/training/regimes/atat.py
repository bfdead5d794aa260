"""Anti-Adversarial Training, AT-AT (the ICLR 2026 AT-AT paper; SPEC §1, defence D2).

Per minibatch (x, y): draw a target t uniformly among the other classes, move x towards t with
targeted PGD on the *current* model inside a tiny L∞ ball (random start), and train on

    L = w_std·CE_sum(f(x), y) + w_adv·CE_sum(f(x_adv), t),

with the replication code's weights 1.0 and 0.08. The adversarial term uses the target label
t: the model learns that imperceptible perturbations towards t carry class-t evidence, i.e.
it strengthens non-robust features, which the paper finds protects against model inversion.
The replication code's ε = 0.0005 in [−1, 1] units is for 224×224 images; for small [0, 1]
images ε is re-tuned (SPEC §1.6 suggests 0.005–0.06, step ε/5, 5 steps).

AT-AT does not make the model robust, so it declares no perturbation budget: attacks and
adversarial accuracy use the threat model's ε.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.perturbations import pgd
from privlab.training.regime import Regime, attack_mode


def random_other_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """t ~ Uniform{0..C−1}, then t ← (t + 1) mod C where t = y (the replication code's draw)."""
    t = torch.randint(0, num_classes, y.shape, device=y.device)
    return torch.where(t == y, (t + 1) % num_classes, t)


@REGIMES.register("atat")
@dataclasses.dataclass(frozen=True, kw_only=True)
class AntiAdversarialTraining(Regime):
    """AT-AT: CE(f(x), y) + 0.08·CE(f(x_adv), t), x_adv targeted PGD towards a random t ≠ y."""

    name = "atat"
    eps: float = 0.01
    steps: int = 5
    step_size: float | None = None  # default ε/5
    std_weight: float = 1.0
    adv_weight: float = 0.08
    reduction: Literal["sum", "mean"] = "sum"  # the replication code sums over the batch

    def __post_init__(self) -> None:
        if self.eps < 0 or self.steps < 0:
            raise ValueError(f"eps and steps must be non-negative, got {self.eps}, {self.steps}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")

    def budget(self) -> tuple[float | None, str]:
        return None, "linf"  # anti-adversarial: no robustness is claimed

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        target = random_other_labels(y, logits.shape[1])
        with attack_mode(model):
            x_adv = pgd(
                model,
                x,
                target,
                eps=self.eps,
                steps=self.steps,
                step_size=self.step_size if self.step_size is not None else self.eps / 5,
                targeted=True,
                clip=self.clip,
            )
        standard = F.cross_entropy(logits, y, reduction=self.reduction)
        adversarial = F.cross_entropy(model(x_adv), target, reduction=self.reduction)
        return self.std_weight * standard + self.adv_weight * adversarial
