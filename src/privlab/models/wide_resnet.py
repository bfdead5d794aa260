"""Wide ResNet with a capacity scale s: groups of 16s, 32s, 64s channels (Song et al., Fig. 3).

Pre-activation basic blocks (Zagoruyko & Komodakis). The paper's CIFAR-10 model is
``scale=10, units_per_group=5``; Table 10's small ResNet is ``scale=1, units_per_group=1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from privlab.registry import MODELS


class _Block(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.bn1, self.bn2 = norm(in_ch), norm(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batch_norm)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=not batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        skip = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + skip


class WideResNet(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        scale: int,
        units_per_group: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"wide_resnet needs C×H×W inputs, got shape {tuple(input_shape)}")
        widths = [16 * scale, 32 * scale, 64 * scale]
        self.stem = nn.Conv2d(int(input_shape[0]), 16, 3, padding=1)
        blocks: list[nn.Module] = []
        in_ch = 16
        for g, width in enumerate(widths):
            for u in range(units_per_group):
                blocks.append(_Block(in_ch, width, 2 if (g > 0 and u == 0) else 1, batch_norm))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_ch) if batch_norm else nn.Identity(),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(in_ch, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@MODELS.register("wide_resnet")
def wide_resnet(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    scale: int = 1,
    units_per_group: int = 1,
    batch_norm: bool = True,
) -> nn.Module:
    """Wide ResNet, channels (16s, 32s, 64s), ``units_per_group`` residual blocks per group."""
    return WideResNet(input_shape, num_classes, scale, units_per_group, batch_norm)
