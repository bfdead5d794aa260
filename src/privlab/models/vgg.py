"""A small VGG-style CNN: blocks of two 3×3 convolutions followed by 2×2 max pooling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from privlab.registry import MODELS


@MODELS.register("vgg_small")
def vgg_small(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (32, 64, 128),
    fc: int = 256,
    batch_norm: bool = False,
) -> nn.Module:
    """VGG-ish: per ``channels`` entry two conv3×3-ReLU layers and a max-pool; global pool; FC."""
    if len(input_shape) != 3:
        raise ValueError(f"vgg_small needs C×H×W inputs, got shape {tuple(input_shape)}")
    layers: list[nn.Module] = []
    in_ch, side = int(input_shape[0]), min(int(input_shape[1]), int(input_shape[2]))
    for c in channels:
        for _ in range(2):
            layers.append(nn.Conv2d(in_ch, int(c), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(c)))
            layers.append(nn.ReLU())
            in_ch = int(c)
        if side >= 2:  # stop pooling once the feature map is 1×1 (8×8 inputs)
            layers.append(nn.MaxPool2d(2))
            side //= 2
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(in_ch, fc),
        nn.ReLU(),
        nn.Linear(fc, num_classes),
    ]
    model = nn.Sequential(*layers)
    with torch.no_grad():  # fail at build time, not mid-training, on an impossible shape
        model.eval()(torch.zeros(1, *input_shape))
    return model.train()
