"""Exact input recovery from a fully connected first layer (Phong et al. 2017; Geiping §3).

If the first parametrised layer is z = W x + b, then for one example ∂L/∂W_i = (∂L/∂z_i)·xᵀ and
∂L/∂b_i = ∂L/∂z_i, so for any unit i with ∂L/∂b_i ≠ 0

    x = (∂L/∂W_i) / (∂L/∂b_i),

whatever the rest of the network. The unit with the largest |∂L/∂b_i| is used (the best
conditioned division). For a batch of B > 1 the mean-loss gradients give instead
Σ_k δ_ki x_k / Σ_k δ_ki with δ_ki = ∂ℓ_k/∂z_i: a weighted mix of the batch's inputs (weights
summing to one, possibly negative), returned as the single reconstruction. For a FedAvg
pseudo-gradient (several local steps) the ratio is likewise only approximate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import (
    GradientInversionAttack,
    GradientInversionResult,
    label_scores,
)
from privlab.federated.observation import GradientObservation
from privlab.registry import ATTACKS
from privlab.threat_model import Access


def first_parametrised_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the first module, in registration order, that owns parameters."""
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            return name, module
    raise ValueError("the model has no parameters")


@ATTACKS.register("analytic_fc")
@dataclasses.dataclass(kw_only=True)
class AnalyticFC(GradientInversionAttack):
    """Closed form x = ∇W_i / ∇b_i of a first nn.Linear layer: exact for a batch of one.

    Reads the update and the architecture only, never the weights' values: it requires
    PARAM_GRADIENTS alone and works on the target's weightless architecture."""

    name: ClassVar[str] = "analytic_fc"
    requires: ClassVar[Access] = Access.PARAM_GRADIENTS
    min_bias_grad: float = 0.0  # units with |∂L/∂b_i| ≤ this are not used

    def _invert(
        self,
        model: nn.Module,
        obs: GradientObservation,
        input_shape: tuple[int, ...],
        num_classes: int,
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        name, layer = first_parametrised_layer(model)
        if not isinstance(layer, nn.Linear) or layer.bias is None:
            kind = type(layer).__name__
            detail = "nn.Linear without a bias" if isinstance(layer, nn.Linear) else kind
            raise ValueError(
                f"{self.name} needs a model whose first parametrised layer is nn.Linear with a "
                f"bias; {name!r} is {detail}"
            )
        if layer.in_features != math.prod(input_shape):
            raise ValueError(
                f"the first layer takes {layer.in_features} inputs but input_shape "
                f"{input_shape} has {math.prod(input_shape)}"
            )
        prefix = f"{name}." if name else ""
        g_w = obs.gradients[prefix + "weight"].detach().double()
        g_b = obs.gradients[prefix + "bias"].detach().double()
        unit = int(g_b.abs().argmax())
        if not float(g_b[unit].abs()) > self.min_bias_grad:
            raise ValueError(
                f"every bias gradient of {name!r} is zero (≤ {self.min_bias_grad}): the input "
                "cannot be read off this layer"
            )
        image = (g_w[unit] / g_b[unit]).float().reshape(1, *input_shape)
        if obs.labels_known:
            assert obs.labels is not None
            label = torch.mode(obs.labels.long()).values.reshape(1)
        else:
            label = label_scores(obs, model).argmin().reshape(1)
        return GradientInversionResult(images=image, labels=label)
