"""Interval bound propagation (IBP; Gowal et al. 2018, Mirman et al.'s box domain).

Bounds are carried as centre and radius: an affine layer maps the centre through the layer
and the radius through its absolute weights, a monotone layer (ReLU, pooling) maps the lower
and upper bounds directly. The input box is B_ε(x) ∩ [lo, hi], so the bounds are sound for
every input the threat model allows.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

Box = tuple[torch.Tensor, torch.Tensor]  # (lower, upper)

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, nn.AvgPool2d, nn.MaxPool2d,
    nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.Dropout,
)  # fmt: skip


class UnsupportedLayerError(TypeError):
    """The verifier met a layer it cannot bound."""


def unsupported(layer: nn.Module, why: str = "") -> UnsupportedLayerError:
    """The error for a layer no verifier can bound, naming it and the supported layers."""
    names = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
    return UnsupportedLayerError(
        f"cannot propagate bounds through {type(layer).__name__}{f' {why}' if why else ''}; "
        f"supported layers are {names} (composed with nn.Sequential)"
    )


def flat_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The model as a flat sequence of layers every verifier supports (nested Sequentials are
    unrolled); raises :class:`UnsupportedLayerError` for anything else."""
    if isinstance(model, nn.Sequential):
        for child in model:
            yield from flat_layers(child)
        return
    if not isinstance(model, SUPPORTED_LAYERS):
        raise unsupported(model)
    if isinstance(model, nn.BatchNorm1d | nn.BatchNorm2d) and (
        model.training or model.running_mean is None or model.running_var is None
    ):
        raise unsupported(model, "in training mode (BatchNorm must be in eval mode)")
    if isinstance(model, nn.Conv2d) and model.padding_mode != "zeros":
        raise unsupported(model, f"with padding_mode={model.padding_mode!r}")
    if isinstance(model, nn.MaxPool2d) and model.return_indices:
        raise unsupported(model, "with return_indices=True")
    yield model


def _affine(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    if isinstance(layer, nn.Linear):
        centre = F.linear(centre, layer.weight, layer.bias)
        radius = F.linear(radius, layer.weight.abs())
    elif isinstance(layer, nn.Conv2d):
        centre = layer(centre)
        radius = F.conv2d(
            radius,
            layer.weight.abs(),
            None,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )
    else:  # eval-mode BatchNorm: a per-channel affine map
        assert isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d)
        var = torch.as_tensor(layer.running_var)
        gamma = layer.weight if layer.weight is not None else torch.ones_like(var)
        scale = gamma / torch.sqrt(var + layer.eps)
        shape = (1, -1) + (1,) * (centre.dim() - 2)
        centre = layer(centre)
        radius = radius * scale.abs().view(shape)
    return centre - radius, centre + radius


def interval_trace(
    model: nn.Module, x: torch.Tensor, eps: float, clip: tuple[float, float] = (0.0, 1.0)
) -> list[Box]:
    """The box after every layer of ``model`` (nested Sequentials unrolled), in one pass."""
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    layers = list(flat_layers(model))  # refuse unsupported models before any work
    lower = (x - eps).clamp(*clip)
    upper = (x + eps).clamp(*clip)
    trace = []
    for layer in layers:
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.BatchNorm1d | nn.BatchNorm2d):
            lower, upper = _affine(layer, lower, upper)
        elif isinstance(layer, nn.ReLU):  # not layer(): an in-place ReLU would edit the trace
            lower, upper = F.relu(lower), F.relu(upper)
        elif not isinstance(layer, nn.Dropout | nn.Identity):
            lower, upper = layer(lower), layer(upper)  # monotone non-decreasing maps
        trace.append((lower, upper))
    return trace


def interval_bounds(
    model: nn.Module, x: torch.Tensor, eps: float, clip: tuple[float, float] = (0.0, 1.0)
) -> Box:
    """Lower and upper bounds on ``model``'s outputs over B_ε(x) ∩ [clip] (L∞), per example.

    Differentiable in the model's parameters (verified training backpropagates through it);
    wrap calls in ``torch.no_grad()`` when only the values are needed.
    """
    trace = interval_trace(model, x, eps, clip)
    if not trace:
        return (x - eps).clamp(*clip), (x + eps).clamp(*clip)
    return trace[-1]


def worst_case_logits(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logits of the verified worst case for label y: ẑ_y = lower_y, ẑ_j = upper_j (j ≠ y)."""
    true = F.one_hot(y, lower.shape[1]).bool()
    return torch.where(true, lower, upper)
