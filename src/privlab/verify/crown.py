"""CROWN linear relaxation bounds (Zhang et al. 2018) for fully connected ReLU networks.

Each ReLU with pre-activation bounds l < 0 < u is enclosed between two lines: the chord
u(z − l)/(u − l) above and αz below (α = 1 if u > −l else 0, the adaptive choice). A bound
on any neuron is propagated backwards as a linear function of the input and minimised over
the input box B_ε(x) ∩ [lo, hi]. Intermediate bounds are computed the same way, layer by
layer, and every bound is intersected with the interval (IBP) bound, so CROWN is never looser
than IBP. Convolutional layers are not supported yet (see the error).
"""

from __future__ import annotations

import torch
from torch import nn

from privlab.verify.intervals import Box, UnsupportedLayerError, interval_trace

CROWN_LAYERS = (nn.Flatten, nn.Linear, nn.ReLU, nn.Identity, nn.Dropout)


def _linear_layers(model: nn.Module) -> list[nn.Module]:
    layers = list(model) if isinstance(model, nn.Sequential) else [model]
    flat: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            flat += _linear_layers(layer)
        elif isinstance(layer, CROWN_LAYERS):
            if not isinstance(layer, nn.Identity | nn.Dropout):
                flat.append(layer)
        else:
            names = ", ".join(t.__name__ for t in CROWN_LAYERS)
            raise UnsupportedLayerError(
                f"CROWN cannot bound {type(layer).__name__} yet; supported layers are {names} "
                "(use interval_bounds for convolutional models)"
            )
    return flat


def _relaxation(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Slopes and upper intercept of the ReLU relaxation, per neuron (batch × n)."""
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    denom = (upper - lower).clamp_min(1e-12)
    up_slope = torch.where(active, 1.0, torch.where(unstable, upper / denom, 0.0))
    up_bias = torch.where(unstable, -up_slope * lower, 0.0)
    low_slope = torch.where(active, 1.0, torch.where(unstable & (upper > -lower), 1.0, 0.0))
    return low_slope, up_slope, up_bias


def _backward(
    coeff: torch.Tensor,
    layers: list[nn.Module],
    relus: list[tuple[torch.Tensor, ...]],
    x_low: torch.Tensor,
    x_up: torch.Tensor,
) -> torch.Tensor:
    """Lower bound of coeff · (output of ``layers``) over the input box; coeff is B×m×n."""
    bias = torch.zeros(coeff.shape[:2], dtype=coeff.dtype, device=coeff.device)
    relu_index = len(relus)
    for layer in reversed(layers):
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                bias = bias + coeff @ layer.bias
            coeff = coeff @ layer.weight
        elif isinstance(layer, nn.ReLU):
            relu_index -= 1
            low_slope, up_slope, up_bias = relus[relu_index]
            pos, neg = coeff.clamp(min=0), coeff.clamp(max=0)
            bias = bias + (neg * up_bias.unsqueeze(1)).sum(-1)
            coeff = pos * low_slope.unsqueeze(1) + neg * up_slope.unsqueeze(1)
    pos, neg = coeff.clamp(min=0), coeff.clamp(max=0)
    return (pos @ x_low.unsqueeze(-1) + neg @ x_up.unsqueeze(-1)).squeeze(-1) + bias


@torch.no_grad()
def crown_bounds(
    model: nn.Module, x: torch.Tensor, eps: float, clip: tuple[float, float] = (0.0, 1.0)
) -> Box:
    """CROWN lower and upper bounds on the outputs over B_ε(x) ∩ [clip] (L∞), per example."""
    layers = _linear_layers(model)
    ibp = interval_trace(nn.Sequential(*layers), x, eps, clip)  # box after every layer
    x_low = (x - eps).clamp(*clip).flatten(1)
    x_up = (x + eps).clamp(*clip).flatten(1)
    relus: list[tuple[torch.Tensor, ...]] = []
    lower = upper = x_low
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            relus.append(_relaxation(lower, upper))
        elif isinstance(layer, nn.Linear):
            eye = torch.eye(layer.out_features, dtype=x.dtype, device=x.device)
            eye = eye.expand(len(x), -1, -1)
            prefix = layers[: i + 1]
            lower = torch.maximum(_backward(eye, prefix, relus, x_low, x_up), ibp[i][0])
            upper = torch.minimum(-_backward(-eye, prefix, relus, x_low, x_up), ibp[i][1])
    if isinstance(layers[-1], nn.ReLU):  # bounds above are pre-activation; apply the ReLU
        lower, upper = lower.clamp(min=0), upper.clamp(min=0)
    return lower, upper
