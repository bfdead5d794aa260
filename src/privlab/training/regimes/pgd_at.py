"""PGD adversarial training (Madry et al. 2018; Song et al. Eq. 8–9), with the adv-train
ratio of Song et al. Table 5 and the optional DA regulariser of Song et al. [51] (Table 11).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from privlab.registry import REGIMES
from privlab.training.perturbations import pgd
from privlab.training.regime import Regime, attack_mode


def _gaussian_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ℓ1 distance between the means plus between the covariances of two logit sets."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a = (a - mean_a).T @ (a - mean_a) / max(len(a) - 1, 1)
    cov_b = (b - mean_b).T @ (b - mean_b) / max(len(b) - 1, 1)
    return (mean_a - mean_b).abs().sum() + (cov_a - cov_b).abs().sum()


@REGIMES.register("pgd_at")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PGDAdversarialTraining(Regime):
    """Train on untargeted PGD examples (random start) inside the ε-ball.

    ``adv_ratio`` r (Song et al. Table 5; r = 1 is Madry): with ``adv_subset: fixed`` (the
    paper's §5.2.2) a fixed subset of round(r·n) training points, drawn when training starts,
    gets the robust loss for the whole training and the others the natural loss; with
    ``adv_subset: batch`` the first round(r·B) examples of every shuffled batch get it (so
    every point is adversarially trained some of the time). ``da_weight`` > 0 adds the
    domain-adaptation regulariser: ℓ1 gaps between mean and covariance of benign vs
    adversarial logits.
    """

    name = "pgd_at"
    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None  # default 2.5·ε/steps
    norm: Literal["linf", "l2"] = "linf"
    adv_ratio: float = 1.0
    adv_subset: Literal["fixed", "batch"] = "fixed"
    da_weight: float = 0.0
    _state: dict[str, torch.Tensor] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.adv_ratio <= 1.0:
            raise ValueError(f"adv_ratio must be in [0, 1], got {self.adv_ratio}")
        if self.adv_subset not in ("fixed", "batch"):
            raise ValueError(f"adv_subset must be 'fixed' or 'batch', got {self.adv_subset!r}")

    @property
    def fixed_subset(self) -> bool:
        """Only some training points, always the same, get the robust loss."""
        return self.adv_subset == "fixed" and 0.0 < self.adv_ratio < 1.0

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        if self.fixed_subset:  # drawn from the loop's seeded RNG: the seed fixes the subset
            n = len(loader.dataset)  # type: ignore[arg-type]
            robust = torch.zeros(n, dtype=torch.bool)
            robust[torch.randperm(n)[: round(self.adv_ratio * n)]] = True
            self._state["robust"] = robust
        return model, optimizer, loader

    def robust_points(self) -> torch.Tensor | None:
        """The training points that get the robust loss (a fixed subset), once training began."""
        return self._state.get("robust")

    def loss_at(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        if not self.fixed_subset:
            return self.loss(model, x, y)
        robust = self._state["robust"][index.cpu()]
        order = torch.argsort((~robust).to(torch.uint8), stable=True).to(x.device)
        return self._loss(model, x[order], y[order], int(robust.sum()))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(model, x, y, round(self.adv_ratio * len(y)))

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_adv: int) -> torch.Tensor:
        """The robust loss on the first ``n_adv`` rows, the natural loss on the rest."""
        if n_adv == 0:
            return F.cross_entropy(model(x), y)
        with attack_mode(model):
            x_adv = pgd(
                model,
                x[:n_adv],
                y[:n_adv],
                eps=self.eps,
                steps=self.steps,
                step_size=self.step_size,
                norm=self.norm,
                clip=self.clip,
            )
        batch = torch.cat([x_adv, x[n_adv:]]) if n_adv < len(y) else x_adv
        logits = model(batch)
        loss = F.cross_entropy(logits, y)
        if self.da_weight > 0:
            benign = model(x[:n_adv])
            loss = loss + self.da_weight * _gaussian_gap(benign, logits[:n_adv])
        return loss
