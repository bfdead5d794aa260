"""The weak adversary's reconstructor network (Maciazek & Allison §3.1, App. B, Eq. 3).

A generator maps a released head's normalised parameters (concatenated with a one-hot class
for the conditional variant) to one image of that class from the head's training set:

    θ → ConvTranspose(k×k) → k×k×4S → ResBlock ↑2 → 2S → ResBlock ↑2 → S [→ ResBlock ↑2 → S]
      → BatchNorm → ReLU → Conv 3×3 → tanh,

with residual blocks BN → ReLU → nearest ↑2 → conv 3×3 → BN → ReLU → conv 3×3, plus a
nearest ↑2 (and 1×1 conv when the width changes) bypass. The start size k is chosen so that the
doublings land on the image size (4 → 32 for the paper's padded MNIST; 7 → 28 here).

Training (Eq. 3): the head's training images of the class, Z_1..Z_M, are all acceptable
answers, so the loss is a soft minimum over them,

    ℓ_i = (MSE(Z_i, R(θ)) + MAE(Z_i, R(θ)))/2,   loss = Σ_i ℓ_i e^{−αℓ_i} / Σ_i e^{−αℓ_i},

with α = 100; images live in [−1, 1]. Parameters are normalised per coordinate by the shadow
heads' mean and standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Pre-activation up-sampling residual block (×2, nearest neighbour)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.bypass = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.bypass(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualGenerator(nn.Module):
    """θ (⊕ one-hot class) → image in [−1, 1] of shape ``out_shape`` (C × H × H)."""

    def __init__(
        self, in_dim: int, out_shape: tuple[int, int, int], *, width: int = 256, blocks: int = 2
    ) -> None:
        super().__init__()
        channels, side, _ = out_shape
        start = side // 2**blocks
        if start * 2**blocks != side:
            raise ValueError(f"image side {side} is not a start size times 2^{blocks}")
        self.out_shape = tuple(out_shape)
        widths = [max(1, width * 4 // 2**i) for i in range(blocks)] + [width]
        self.stem = nn.ConvTranspose2d(in_dim, widths[0], start)
        self.blocks = nn.Sequential(*(ResBlock(widths[i], widths[i + 1]) for i in range(blocks)))
        self.head = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, channels, 3, padding=1), nn.Tanh()
        )

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        # The stem's input is 1×1, so its transposed convolution is one matrix product: done
        # as such it is about twice as fast (a tenth of a training step at Table 1's size).
        w, k = self.stem.weight, self.stem.kernel_size[0]
        assert self.stem.bias is not None
        h = torch.addmm(self.stem.bias.repeat_interleave(k * k), theta, w.flatten(1))
        return self.head(self.blocks(h.view(len(theta), -1, k, k)))


class MLPReconstructor(nn.Module):
    """The smaller option: θ → 512 → 512 → image (tanh), after Balle et al.'s RecoNN."""

    def __init__(self, in_dim: int, out_shape: tuple[int, int, int], width: int = 512) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = nn.Sequential(
            nn.Linear(in_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, math.prod(out_shape)),
            nn.Tanh(),
        )

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.net(theta).view(len(theta), *self.out_shape)


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with its fused kernel: one pass over the weights per step where the loop over
    them takes about a quarter of a reconstructor's step (the generator's stem alone has
    16 million weights at Table 1's size)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def training_forward(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    """``model(x)`` as a training step takes it, in float32: under ``precision="bfloat16"``
    the forward pass runs in bfloat16 (autocast; the weights stay float32)."""
    mixed = precision == "bfloat16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed):
        return model(x).float()


def soft_min_loss(
    recon: torch.Tensor,
    candidates: torch.Tensor,
    mask: torch.Tensor | None = None,
    alpha: float = 100.0,
) -> torch.Tensor:
    """Eq. 3 per reconstruction: ``recon`` B × C×H×W, ``candidates`` B × M × C×H×W (the class
    members of each head's training set), ``mask`` B × M marks real candidates (padding)."""
    diff = candidates - recon[:, None]
    per = 0.5 * (diff.pow(2).flatten(2).mean(2) + diff.abs().flatten(2).mean(2))  # B × M
    logits = -alpha * per
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=1)
    return (weights * per.masked_fill(~mask, 0.0) if mask is not None else weights * per).sum(1)


class WeightNormaliser:
    """Per-coordinate mean and standard deviation (and optionally the full covariance) of shadow
    parameters, accumulated in a streaming pass (Chan et al.'s parallel update), then
    θ ↦ (θ − mean)/std."""

    def __init__(self, *, covariance: bool = False) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.comoment: torch.Tensor | None = None
        self.track_covariance = covariance

    def update(self, theta: torch.Tensor) -> None:
        theta = theta.double()
        n, mean = len(theta), theta.mean(0)
        centred = theta - mean
        m2 = centred.pow(2).sum(0)
        co = centred.T @ centred if self.track_covariance else None
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2, self.comoment = n, mean, m2, co
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta.pow(2) * self.count * n / total
        if co is not None and self.comoment is not None:
            self.comoment = self.comoment + co + torch.outer(delta, delta) * self.count * n / total
        self.count = total

    def state(self) -> dict[str, Any]:
        """What the pass accumulated (for a checkpoint): :meth:`from_state` restores it."""
        return {
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "comoment": self.comoment,
            "covariance": self.track_covariance,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WeightNormaliser:
        norm = cls(covariance=bool(state["covariance"]))
        norm.count, norm.mean, norm.m2 = int(state["count"]), state["mean"], state["m2"]
        norm.comoment = state["comoment"]
        return norm

    def std(self) -> torch.Tensor:
        assert self.m2 is not None
        return (self.m2 / self.count).sqrt().clamp_min(1e-12)

    def covariance(self) -> torch.Tensor:
        if self.comoment is None:
            raise RuntimeError("the covariance was not tracked (covariance=True)")
        return self.comoment / self.count

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("the normaliser has seen no shadow parameters")
        return ((theta.double() - self.mean) / self.std()).float()
