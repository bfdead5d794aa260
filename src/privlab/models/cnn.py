"""The CNNs of Song et al. (CCS 2019), Table 13, scaled by a width factor, plus a small CNN.

All layers are ReLU except the last fully connected one. ``3×3+2`` in the paper means a 3×3
convolution with stride 2; padding 1 keeps "+1" layers size-preserving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from privlab.registry import MODELS


def _conv_stack(in_ch: int, plan: Sequence[tuple[int, int]]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for out_ch, stride in plan:
        layers += [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.ReLU()]
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


def _flat_size(features: nn.Module, input_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(math.prod(features(torch.zeros(1, *input_shape)).shape[1:]))


def _conv_classifier(
    input_shape: Sequence[int], num_classes: int, plan: Sequence[tuple[int, int]], fc: int
) -> nn.Sequential:
    if len(input_shape) != 3:
        raise ValueError(f"a CNN needs C×H×W inputs, got shape {tuple(input_shape)}")
    features, _ = _conv_stack(int(input_shape[0]), plan)
    flat = _flat_size(features, input_shape)
    return nn.Sequential(
        features, nn.Flatten(), nn.Linear(flat, fc), nn.ReLU(), nn.Linear(fc, num_classes)
    )


@MODELS.register("cnn_yale")
def cnn_yale(
    *, input_shape: Sequence[int], num_classes: int, scale: int = 8, fc: int = 200
) -> nn.Module:
    """Table 13 Yale Face CNN: channels (s, 2s, 4s, 8s), each at stride 1 then 2; s=8 original."""
    plan = [(c * scale, stride) for c in (1, 2, 4, 8) for stride in (1, 2)]
    return _conv_classifier(input_shape, num_classes, plan, fc)


@MODELS.register("cnn_fmnist")
def cnn_fmnist(
    *, input_shape: Sequence[int], num_classes: int, width: float = 1.0, fc: int = 200
) -> nn.Module:
    """Table 13 Fashion-MNIST CNN: Conv256 ×3 (strides 1,1,2), Conv512 ×3, FC200; × width."""
    c1, c2 = max(1, round(256 * width)), max(1, round(512 * width))
    plan = [(c1, 1), (c1, 1), (c1, 2), (c2, 1), (c2, 1), (c2, 2)]
    return _conv_classifier(input_shape, num_classes, plan, fc)


@MODELS.register("cnn_small")
def cnn_small(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (32, 64),
    fc: int = 200,
) -> nn.Module:
    """Small CNN of the CPU pilot (SPEC §3.7): a stride-2 3×3 conv per ``channels`` entry, FC."""
    plan = [(int(c), 2) for c in channels]
    return _conv_classifier(input_shape, num_classes, plan, fc)
