"""BiDO, bilateral dependency optimisation (Peng et al. 2022; SPEC §1, defence D4).

    L = CE_mean(f(x), y) + Σ_l [a1·nHSIC(X, Z_l) − a2·nHSIC(Y, Z_l)]

over the hidden representations Z_l (every ReLU output, or the penultimate features), with
BiDO's normalised-CCA HSIC estimator (:mod:`privlab.metrics.hsic`): Gaussian kernels with
bandwidth σ²·d on X and Z, a linear kernel on one-hot Y. Defaults a1 = 0.05, a2 = 0.5, σ = 5
(the replication code). The first term removes input information a model-inversion attack
could recover; the second keeps label information.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.metrics.hsic import capture_hidden, hsic_tensor
from privlab.registry import REGIMES
from privlab.training.regime import Regime


@REGIMES.register("bido")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BiDO(Regime):
    """BiDO: CE + Σ_l [a1·nHSIC(X, Z_l) − a2·nHSIC(Y, Z_l)] over hidden layers."""

    name = "bido"
    a1: float = 0.05
    a2: float = 0.5
    sigma: float = 5.0
    layers: Literal["penultimate", "relu"] = "relu"

    def __post_init__(self) -> None:
        if self.layers not in ("penultimate", "relu"):
            raise ValueError(f"unknown layers {self.layers!r}; use penultimate or relu")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, hidden = capture_hidden(model, x, self.layers)
        loss = F.cross_entropy(logits, y)
        if len(y) < 2:
            return loss
        onehot = F.one_hot(y, logits.shape[1])
        for z in hidden:
            xz = hsic_tensor(x, z, sigma=self.sigma)
            yz = hsic_tensor(onehot, z, kernel_a="linear", sigma=self.sigma)
            loss = loss + (self.a1 * xz - self.a2 * yz).to(loss.dtype)
        return loss
