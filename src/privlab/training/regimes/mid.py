"""MID, mutual-information regularisation with a variational information bottleneck (Wang et
al., "Improving Robustness to Model Inversion Attacks via Mutual Information Regularization",
AAAI 2021, arXiv 2020).

The classifier's last linear layer Linear(F, C) becomes a VIB head: a layer Linear(F, 2k),
k = F//2, gives μ (first k outputs) and σ = softplus(s − 5) (last k); the head classifies
r = μ + σ·ε, ε ~ N(0, I), with Linear(k, C). Training minimises

    L = CE_sum(f(x), y) + β·Σ_batch KL(N(μ, σ²) ‖ N(0, I)),
    KL = −½ Σ_j (1 + 2 log σ_j − μ_j² − σ_j²),

with β = 0.03. As in the replication code the head samples at evaluation too (``sample_at_eval``),
so the released model's outputs are stochastic. ``reduction="mean"`` averages both terms.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.models.surgery import last_linear, set_module
from privlab.registry import REGIMES
from privlab.training.regime import Regime


class VIBHead(nn.Module):
    """Variational information bottleneck head: features → (μ, σ) → sampled r → logits."""

    def __init__(
        self, in_features: int, num_classes: int, k: int | None = None, sample_at_eval: bool = True
    ) -> None:
        super().__init__()
        self.k = k if k is not None else max(1, in_features // 2)
        self.st_layer = nn.Linear(in_features, 2 * self.k)
        self.classifier = nn.Linear(self.k, num_classes)
        self.sample_at_eval = sample_at_eval
        #: Σ_batch KL of the last training-mode forward pass (read and cleared by the regime)
        self.last_info_loss: torch.Tensor | None = None

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.st_layer(x)
        return stats[:, : self.k], F.softplus(stats[:, self.k :] - 5, beta=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, std = self.statistics(x)
        r = mu + std * torch.randn_like(std) if self.training or self.sample_at_eval else mu
        if self.training:
            self.last_info_loss = -0.5 * (1 + 2 * std.log() - mu.pow(2) - std.pow(2)).sum()
        return self.classifier(r)


def vib_head(model: nn.Module) -> VIBHead | None:
    return next((m for m in model.modules() if isinstance(m, VIBHead)), None)


@REGIMES.register("mid")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MutualInformationDefence(Regime):
    """MID: CE + β·KL of a variational information bottleneck replacing the logit layer."""

    name = "mid"
    beta: float = 0.03
    sample_at_eval: bool = True
    reduction: Literal["sum", "mean"] = "sum"  # the replication code sums the cross-entropy

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")

    def adapt_model(self, model: nn.Module) -> nn.Module:
        head = vib_head(model)
        if head is None:
            name, linear = last_linear(model)
            head = VIBHead(linear.in_features, linear.out_features)
            set_module(model, name, head.to(linear.weight.device))
        head.sample_at_eval = self.sample_at_eval
        return model

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        head = vib_head(model)
        if head is None:
            raise ValueError("mid needs a model adapted with adapt_model (no VIB head found)")
        logits = model(x)
        info, head.last_info_loss = head.last_info_loss, None
        if info is None:
            raise RuntimeError("the VIB head computed no KL term; is the model in training mode?")
        ce = F.cross_entropy(logits, y, reduction=self.reduction)
        return ce + self.beta * (info if self.reduction == "sum" else info / len(y))

    def finalize(self, model: nn.Module) -> nn.Module:
        head = vib_head(model)
        if head is not None:
            head.last_info_loss = None  # drop the autograd graph (and allow deepcopy)
        return model
