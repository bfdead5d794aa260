"""Dropout at the client (a defence Liu et al. 2025 list among those that perturb the computation,
SPEC §5.6: rates 0.1–0.5).

The client computes its update with inverted dropout on the input of every parametrised layer
after the first (the hidden activations: each entry is zeroed with probability p and the rest
scaled by 1/(1 − p)), with fresh masks drawn from the client's seeded generator at every
forward pass. The server knows the model but not the masks, so its simulated update (without
dropout) no longer matches what it observes. In federated training every client trains with
the same dropout, so the utility cost is that of dropout training.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from privlab.federated.client import client_update
from privlab.federated.defences.base import DEFENCES, Defence, require_generator
from privlab.federated.observation import GradientObservation

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _dropped_layers(model: nn.Module) -> list[nn.Module]:
    """Every linear / convolutional layer after the first parametrised module."""
    parametrised = [
        m for m in model.modules() if next(m.parameters(recurse=False), None) is not None
    ]
    return [m for m in parametrised[1:] if isinstance(m, _LAYERS)]


@DEFENCES.register("dropout")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dropout(Defence):
    """Inverted dropout of rate ``p`` on the hidden activations while the client computes."""

    name: ClassVar[str] = "dropout"
    acts_on_update: ClassVar[bool] = False
    p: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.p) and 0 <= self.p < 1):
            raise ValueError(f"dropout rate p must be in [0, 1), got p={self.p}")

    def with_masks(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """A copy of ``model`` that drops the inputs of its hidden layers at every forward."""
        local = copy.deepcopy(model)
        keep = 1.0 - self.p

        def drop(_module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
            x = inputs[0]
            mask = torch.rand(x.shape, generator=generator, device="cpu") < keep
            return (x * mask.to(device=x.device, dtype=x.dtype) / keep, *inputs[1:])

        layers = _dropped_layers(local)
        if not layers:
            raise ValueError("dropout needs a model with a linear or convolutional hidden layer")
        for layer in layers:
            layer.register_forward_pre_hook(drop)
        return local

    def apply(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        local_steps: int = 1,
        lr: float = 0.1,
        local_batch: int | None = None,
    ) -> GradientObservation:
        local = (
            model
            if self.p == 0
            else self.with_masks(model, require_generator(generator, "dropout"))
        )
        return client_update(local, x, y, local_steps=local_steps, lr=lr, local_batch=local_batch)
