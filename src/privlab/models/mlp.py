"""Multi-layer perceptron: the workhorse of the CPU-scale experiments (SPEC §3.7)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from privlab.registry import MODELS


@MODELS.register("mlp")
def mlp(
    *, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (512, 512)
) -> nn.Module:
    """Fully connected ReLU network: flatten → hidden layers → logits."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
