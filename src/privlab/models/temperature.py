"""Temperature scaling (Song et al. §7.2.1, Eq. 21): an output-side countermeasure."""

from __future__ import annotations

import torch
from torch import nn


class TemperatureScaled(nn.Module):
    """Wrap a model so that its logits are divided by ``temperature`` before any softmax.

    T > 1 lowers confidence; T → ∞ gives a uniform, useless output. Predictions (argmax) and
    therefore accuracy are unchanged.
    """

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature
