"""CROWN linear relaxation bounds (Zhang et al. 2018) and CROWN-IBP (Zhang et al. 2020).

A bound on ``spec · F(x)`` is propagated *backwards* through the network as a linear function
``A · z_k + b`` of the value z_k at each layer, then minimised in closed form over the input box
B_ε(x) ∩ [lo, hi] (L∞ ball clipped to the input range). The coefficients ``A`` keep the layer's
shape (batch × spec × C × H × W), so convolutions are never turned into dense matrices:

* Linear: ``A ← A·W``; Conv2d: its exact adjoint, ``conv_transpose2d(A, W)`` with the conv's
  padding and the output padding that restores the input size (cropped explicitly for "same"
  padding), or, with few input channels (C_in·k² ≤ C_out, e.g. the first layer), a matmul onto
  the patches and a fold (col2im); any stride, padding, dilation and groups;
  AvgPool2d / AdaptiveAvgPool2d: their exact adjoints (PyTorch's own backward kernels);
  eval-mode BatchNorm: a per-channel scale; Flatten: a reshape; Identity / Dropout: skipped.
* ReLU with pre-activation bounds l < 0 < u: the chord u(z − l)/(u − l) above and αz below
  (α = 1 if u > −l else 0, the adaptive choice of CROWN).
* MaxPool2d, per window with pre-activation bounds: below, y ≥ x_j for j = argmax of the lower
  bounds; above, with j = argmax of the upper bounds and U = the largest upper bound of the
  other inputs, y ≤ max(x_j, U) ≤ x_j when U ≤ l_j (x_j dominates), the constant U when
  U ≥ u_j, else the chord of max(·, U) over [l_j, u_j]. Each coefficient takes the lower or the
  upper relaxation by its sign.

The ReLU / MaxPool relaxations need bounds on their inputs ("intermediate" bounds):

* ``intermediate="crown"`` (full CROWN) computes them by CROWN itself, one backward pass per
  nonlinearity with an identity specification over that layer's neurons (only the neurons IBP
  leaves unstable when a ReLU follows; inputs that only pass through a single affine layer take
  the exact interval bound instead). The cost is O(#neurons) backward passes per layer, with a
  dense identity of (chunk × neurons) coefficients: fine for MLPs and tiny CNNs, slow for conv
  layers of MNIST-sized networks (cnn_small at 28×28 needs a backward pass for each of the
  3,136 second-conv neurons: about 1 s per example on one CPU core). Coefficients are processed
  in chunks of at most 2**25 numbers to bound the memory.
* ``intermediate="ibp"`` (CROWN-IBP) takes them from one IBP pass, so only the final backward
  pass from the (small) output specification is needed: the cost of 2·m backward passes for an
  m-row specification (lower and upper bound; m with ``lower_only``). This is what verified
  training uses: cnn_small on 64 MNIST images with the 10-row margin specification takes about
  0.15 s on two CPU cores (0.06 s lower bound only), no dense identity anywhere.

Every bound, intermediate or final, is intersected with the interval (IBP) bound, so CROWN is
never looser than IBP; with a specification the IBP bound folds the specification into the last
Linear layer (Gowal et al.'s elision), which is at least as tight as bounding ``spec`` over the
output box. Everything is differentiable in the model parameters under grad mode (CROWN-IBP
training backpropagates through it); wrap calls in ``torch.no_grad()`` when only values matter.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from privlab.verify.intervals import (
    Box,
    flat_layers,
    interval_trace,
)

Intermediate = Literal["crown", "ibp"]
Relaxation = tuple[torch.Tensor, ...]

_MIXING = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)  # not per-neuron maps
_CHUNK_NUMBERS = 2**25  # coefficient numbers per backward pass in full CROWN's identity specs


def _crown_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, without no-ops; refuses what CROWN cannot bound."""
    layers: list[nn.Module] = []
    for layer in flat_layers(model):  # raises for unsupported layers
        if isinstance(layer, nn.Identity | nn.Dropout):
            continue  # Dropout is the identity at inference (as in IBP)
        if isinstance(layer, nn.ReLU) and layer.inplace:
            layer = nn.ReLU()  # bounds are reused after the layer: never overwrite them
        layers.append(layer)
    return layers


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything after the (batch, spec) dimensions."""
    return t.flatten(2).sum(-1)


def _conv_left_padding(layer: nn.Conv2d) -> tuple[int, int]:
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return 0, 0
        # "same": PyTorch pads total = dilation·(kernel − 1), the smaller half on the left
        d, k = layer.dilation, layer.kernel_size
        return d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2
    return int(layer.padding[0]), int(layer.padding[1])


def _conv_adjoint(layer: nn.Conv2d, coeff: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
    """The exact adjoint (transpose) of the bias-free conv applied to ``coeff`` (N × C × H × W).

    With few input channels the adjoint is a matmul onto the patches and a fold (col2im),
    much faster than a transposed convolution with tiny output channels; otherwise it is
    ``conv_transpose2d`` at zero padding, cropped by the conv's left padding (which covers
    any stride, dilation, groups and "same" padding).
    """
    weight, (h, w) = layer.weight, (int(in_shape[-2]), int(in_shape[-1]))
    ph, pw = _conv_left_padding(layer)
    n, c_out = coeff.shape[:2]
    if layer.groups == 1 and not isinstance(layer.padding, str) and weight[0].numel() <= c_out:
        cols = coeff.flatten(2).transpose(1, 2).reshape(-1, c_out) @ weight.flatten(1)
        cols = cols.view(n, -1, cols.shape[-1]).transpose(1, 2)  # N × (C_in·k·k) × L
        return F.fold(cols, (h, w), layer.kernel_size, layer.dilation, (ph, pw), layer.stride)
    coeff = coeff.contiguous(memory_format=torch.channels_last)  # much faster with oneDNN
    if not isinstance(layer.padding, str):  # let the transposed conv crop (and pad) itself
        s, d, k = layer.stride, layer.dilation, layer.kernel_size
        extra = [
            size - ((o - 1) * s[i] - 2 * (ph, pw)[i] + d[i] * (k[i] - 1) + 1)
            for i, (size, o) in enumerate(zip((h, w), coeff.shape[-2:], strict=True))
        ]
        if all(0 <= e < max(s[i], d[i]) for i, e in enumerate(extra)):
            return F.conv_transpose2d(
                coeff, weight, None, s, (ph, pw), tuple(extra), layer.groups, d
            )
    full = F.conv_transpose2d(coeff, weight, None, layer.stride, 0, 0, layer.groups, layer.dilation)
    return F.pad(full, (-pw, w + pw - full.shape[-1], -ph, h + ph - full.shape[-2]))


def _relu_relaxation(lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """Lower slope, upper slope and upper intercept of the ReLU relaxation, per neuron."""
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    up_slope = torch.where(unstable, upper / denom, active.to(upper.dtype))
    up_bias = torch.where(unstable, -up_slope * lower, torch.zeros_like(lower))
    low_slope = (active | (unstable & (upper > -lower))).to(lower.dtype)
    return low_slope, up_slope, up_bias


def _maxpool_relaxation(
    layer: nn.MaxPool2d, lower: torch.Tensor, upper: torch.Tensor, out_hw: tuple[int, int]
) -> Relaxation:
    """Per output (B × C × L): index of the lower-bounding input, index, slope and intercept of
    the upper-bounding line (indices into the flattened H·W input plane)."""
    k, s = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)
    p, d = _pair(layer.padding), _pair(layer.dilation)
    b, c, h, w = lower.shape
    # pad (−∞, never the max) so that unfold yields exactly the pooling windows (ceil_mode too)
    need = [(o - 1) * s[i] + d[i] * (k[i] - 1) + 1 for i, o in enumerate(out_hw)]
    pad = (p[1], need[1] - w - p[1], p[0], need[0] - h - p[0])

    def windows(t: torch.Tensor, fill: float) -> torch.Tensor:  # → (B·C) × K × L
        t = F.pad(t.reshape(b * c, 1, h, w), pad, value=fill)
        return F.unfold(t, k, dilation=d, stride=s)

    index = torch.arange(h * w, dtype=torch.float64, device=lower.device).view(1, 1, h, w)
    index = windows(index.expand(b, c, h, w), -1.0)
    low, up = windows(lower, -math.inf), windows(upper, -math.inf)
    j_low, j_up = low.argmax(1, keepdim=True), up.argmax(1, keepdim=True)
    idx_low, idx_up = index.gather(1, j_low), index.gather(1, j_up)
    l_j, u_j = low.gather(1, j_up), up.gather(1, j_up)
    others = up.scatter(1, j_up, -math.inf).amax(1, keepdim=True)
    dominated = others <= l_j  # x_j dominates its window: y = x_j (also for single inputs)
    constant = ~dominated & (others >= u_j)
    chord = ~(dominated | constant)
    others = torch.where(dominated, l_j, others)  # finite everywhere (no −∞ in the graph)
    denom = torch.where(chord, u_j - l_j, torch.ones_like(u_j))
    slope = torch.where(
        dominated, torch.ones_like(u_j), torch.where(chord, (u_j - others) / denom, 0.0)
    )
    intercept = torch.where(dominated, torch.zeros_like(u_j), others - slope * l_j)

    def per_output(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, c, -1)

    return (
        per_output(idx_low).long(),
        per_output(idx_up).long(),
        per_output(slope),
        per_output(intercept),
    )


class _Propagator:
    """Backward linear-bound propagation through ``layers``.

    Positions: 0 is the input, k + 1 the output of layer k; layer k maps position k to k + 1.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        x_low: torch.Tensor,
        x_up: torch.Tensor,
        ibp: list[Box],
        intermediate: Intermediate,
    ) -> None:
        self.layers = layers
        self.ibp = [(x_low, x_up), *ibp]  # IBP box at every position
        self.shapes = [box[0].shape[1:] for box in self.ibp]
        self.intermediate = intermediate
        self.bounds: dict[int, Box] = {0: (x_low, x_up)}  # refined boxes (full CROWN)
        self.relax: dict[int, Relaxation] = {}
        for k, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                low_slope, up_slope, up_bias = _relu_relaxation(*self._pre_bounds(k))
                self.relax[k] = (low_slope, up_slope - low_slope, up_bias)
            elif isinstance(layer, nn.MaxPool2d):
                out_hw = (int(self.shapes[k + 1][-2]), int(self.shapes[k + 1][-1]))
                self.relax[k] = _maxpool_relaxation(layer, *self._pre_bounds(k), out_hw)

    # -- intermediate bounds ---------------------------------------------------------------
    def _pre_bounds(self, k: int) -> Box:
        """Bounds on the input of layer k (a ReLU or MaxPool)."""
        if self.intermediate == "ibp":
            return self.ibp[k]
        return self._position(k, only_unstable=isinstance(self.layers[k], nn.ReLU))

    def _position(self, pos: int, only_unstable: bool) -> Box:
        if pos in self.bounds:
            return self.bounds[pos]
        layer = self.layers[pos - 1]
        if isinstance(layer, nn.ReLU | nn.MaxPool2d):  # monotone image of the refined input box
            lower, upper = self._position(pos - 1, only_unstable=False)
            box = (layer(lower), layer(upper))
        elif isinstance(layer, nn.Flatten):
            lower, upper = self._position(pos - 1, only_unstable)
            box = (layer(lower), layer(upper))
        elif not any(isinstance(m, nn.ReLU | nn.MaxPool2d) for m in self.layers[:pos]) and (
            sum(isinstance(m, _MIXING) for m in self.layers[:pos]) <= 1
        ):
            box = self.ibp[pos]  # one affine map of the input box: the interval bound is exact
        else:
            box = self._crown_position(pos, only_unstable)
        self.bounds[pos] = box
        return box

    def _crown_position(self, pos: int, only_unstable: bool) -> Box:
        ibp_low, ibp_up = (t.flatten(1) for t in self.ibp[pos])
        shape = self.shapes[pos]
        batch, n = ibp_low.shape
        if only_unstable:  # the ReLU relaxation only depends on the bounds of unstable neurons
            rows = ((ibp_low < 0) & (ibp_up > 0)).any(0).nonzero().squeeze(1)
        else:
            rows = torch.arange(n, device=ibp_low.device)
        if len(rows) == 0:
            return self.ibp[pos]
        widest = max(math.prod(s) for s in self.shapes[: pos + 1])
        chunk = max(1, _CHUNK_NUMBERS // (2 * batch * widest))
        eye = torch.eye(n, dtype=ibp_low.dtype, device=ibp_low.device)
        lows, ups = [], []
        for part in rows.split(chunk):
            coeff = eye[part].view(1, len(part), *shape).expand(batch, -1, *shape)
            low, up = self.bounds_of(coeff, pos)
            lows.append(low)
            ups.append(up)
        low, up = torch.cat(lows, 1), torch.cat(ups, 1)
        lower = ibp_low.index_copy(1, rows, torch.maximum(low, ibp_low[:, rows]))
        upper = ibp_up.index_copy(1, rows, torch.minimum(up, ibp_up[:, rows]))
        return lower.view(batch, *shape), upper.view(batch, *shape)

    # -- backward pass -----------------------------------------------------------------------
    def bounds_of(self, coeff: torch.Tensor, pos: int) -> Box:
        """Lower and upper bounds of ``Σ coeff · z_pos`` (coeff: B × m × shape) over the box."""
        m = coeff.shape[1]
        lower = self.lower_of(torch.cat([coeff, -coeff], 1), pos)
        return lower[:, :m], -lower[:, m:]

    def lower_of(self, coeff: torch.Tensor, pos: int) -> torch.Tensor:
        """Lower bound of ``Σ coeff · z_pos`` over the input box, per example and row."""
        bias = coeff.new_zeros(coeff.shape[:2])
        for k in range(pos - 1, -1, -1):
            coeff, bias = self._step(k, coeff, bias)
        x_low, x_up = self.bounds[0]
        return (
            _flat_sum(coeff.clamp(min=0) * x_low.unsqueeze(1))
            + _flat_sum(coeff.clamp(max=0) * x_up.unsqueeze(1))
            + bias
        )

    def _step(
        self, k: int, coeff: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move ``coeff · z_{k+1} + bias`` to a lower bound in terms of z_k."""
        layer, in_shape = self.layers[k], self.shapes[k]
        batch, m = coeff.shape[:2]
        if isinstance(layer, nn.Linear):
            if layer.bias is not None:
                bias = bias + _flat_sum(coeff * layer.bias)
            return coeff @ layer.weight, bias
        if isinstance(layer, nn.Conv2d):
            if layer.bias is not None:
                bias = bias + coeff.sum((-2, -1)) @ layer.bias
            flat = _conv_adjoint(layer, coeff.reshape(batch * m, *coeff.shape[2:]), in_shape)
            return flat.contiguous().reshape(batch, m, *in_shape), bias
        if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            var, mean = torch.as_tensor(layer.running_var), torch.as_tensor(layer.running_mean)
            scale = torch.rsqrt(var + layer.eps)
            if layer.weight is not None:
                scale = layer.weight * scale
            shift = -mean * scale
            if layer.bias is not None:
                shift = layer.bias + shift
            view = (1, 1, -1) + (1,) * (coeff.dim() - 3)
            return coeff * scale.view(view), bias + _flat_sum(coeff * shift.view(view))
        if isinstance(layer, nn.Flatten):
            return coeff.reshape(batch, m, *in_shape), bias
        if isinstance(layer, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            grad = coeff.reshape(batch * m, *coeff.shape[2:])
            like = coeff.new_zeros(()).expand(batch * m, *in_shape)  # shape only
            if isinstance(layer, nn.AdaptiveAvgPool2d):
                back = torch.ops.aten._adaptive_avg_pool2d_backward(grad, like)
            else:
                k_size = list(_pair(layer.kernel_size))
                stride = list(_pair(layer.stride or layer.kernel_size))
                back = torch.ops.aten.avg_pool2d_backward(
                    grad,
                    like,
                    k_size,
                    stride,
                    list(_pair(layer.padding)),
                    layer.ceil_mode,
                    layer.count_include_pad,
                    layer.divisor_override,
                )
            return back.reshape(batch, m, *in_shape), bias
        if isinstance(layer, nn.ReLU):
            low_slope, slope_gap, up_bias = self.relax[k]
            neg = coeff.clamp(max=0)
            # coeff⁺·low + coeff⁻·up = coeff·low + coeff⁻·(up − low), in two passes
            out = torch.addcmul(coeff * low_slope.unsqueeze(1), neg, slope_gap.unsqueeze(1))
            bias = bias + (neg.flatten(2) @ up_bias.flatten(1).unsqueeze(-1)).squeeze(-1)
            return out, bias
        assert isinstance(layer, nn.MaxPool2d)
        pos, neg = coeff.clamp(min=0), coeff.clamp(max=0)
        idx_low, idx_up, slope, intercept = self.relax[k]
        channels = int(in_shape[0])
        pos, neg = pos.reshape(batch, m, channels, -1), neg.reshape(batch, m, channels, -1)
        out = coeff.new_zeros(batch, m, channels, math.prod(in_shape[1:]))
        out = out.scatter_add(-1, idx_low.unsqueeze(1).expand_as(pos), pos)
        out = out.scatter_add(-1, idx_up.unsqueeze(1).expand_as(neg), neg * slope.unsqueeze(1))
        bias = bias + _flat_sum(neg * intercept.unsqueeze(1))
        return out.reshape(batch, m, *in_shape), bias


def _spec_interval(layers: list[nn.Module], boxes: list[Box], spec: torch.Tensor) -> Box:
    """IBP bounds of ``spec @ output``; ``boxes`` holds the box at every position (0 = input).

    A final Linear layer is folded into the specification (elision), which is exact for it.
    """
    offset: torch.Tensor | float = 0.0
    if layers and isinstance(layers[-1], nn.Linear) and boxes[-2][0].dim() == 2:
        layer, (low, up) = layers[-1], boxes[-2]
        weight = spec @ layer.weight  # B × m × in
        if layer.bias is not None:
            offset = spec @ layer.bias
    else:
        low, up = (t.flatten(1) for t in boxes[-1])
        weight = spec
    centre = (weight @ ((up + low) / 2).unsqueeze(-1)).squeeze(-1) + offset
    radius = (weight.abs() @ ((up - low) / 2).unsqueeze(-1)).squeeze(-1)
    return centre - radius, centre + radius


def _check_spec(spec: torch.Tensor, x: torch.Tensor, n_out: int) -> None:
    if spec.dim() != 3 or spec.shape[0] != x.shape[0] or spec.shape[2] != n_out:
        raise ValueError(
            f"spec must be batch × m × {n_out} (outputs), got shape {tuple(spec.shape)} "
            f"for a batch of {x.shape[0]}"
        )


def crown_bounds(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    spec: torch.Tensor | None = None,
    intermediate: Intermediate = "crown",
    lower_only: bool = False,
) -> Box:
    """CROWN lower and upper bounds over B_ε(x) ∩ [clip] (L∞), per example.

    Without ``spec`` the bounds are on the outputs (batch × output shape); with ``spec``
    (batch × m × n_out) they are on ``spec @ outputs`` (batch × m), e.g. margins with
    :func:`margin_spec`. ``intermediate`` picks how ReLU / MaxPool input bounds are obtained:
    ``"crown"`` (full CROWN, tightest, a backward pass per layer) or ``"ibp"`` (CROWN-IBP).
    ``lower_only=True`` skips CROWN for the upper bound (half the final backward pass; verified
    training needs only lower margin bounds): the upper bound returned is then IBP's.
    Never looser than IBP; differentiable in the model's parameters under grad mode.
    """
    if intermediate not in ("crown", "ibp"):
        raise ValueError(f"intermediate must be 'crown' or 'ibp', got {intermediate!r}")
    layers = _crown_layers(model)
    ibp = interval_trace(nn.Sequential(*layers), x, eps, clip)  # refuses eps < 0
    x_low, x_up = (x - eps).clamp(*clip), (x + eps).clamp(*clip)
    prop = _Propagator(layers, x_low, x_up, ibp, intermediate)
    out_shape = prop.shapes[-1]
    n_out = math.prod(out_shape)
    if spec is None:
        eye = torch.eye(n_out, dtype=x.dtype, device=x.device)
        coeff = eye.view(1, n_out, *out_shape).expand(len(x), -1, *out_shape)
        ibp_low, ibp_up = prop.ibp[-1]
    else:
        _check_spec(spec, x, n_out)
        spec = spec.to(x.dtype)
        coeff = spec.view(*spec.shape[:2], *out_shape)
        ibp_low, ibp_up = _spec_interval(layers, prop.ibp, spec)
    if lower_only:
        lower = prop.lower_of(coeff, len(layers))
        return torch.maximum(lower.reshape(ibp_low.shape), ibp_low), ibp_up
    lower, upper = prop.bounds_of(coeff, len(layers))
    lower = torch.maximum(lower.reshape(ibp_low.shape), ibp_low)
    return lower, torch.minimum(upper.reshape(ibp_up.shape), ibp_up)


def crown_ibp_bounds(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    spec: torch.Tensor | None = None,
    lower_only: bool = False,
) -> Box:
    """CROWN-IBP bounds (Zhang et al. 2020): CROWN's backward pass on IBP intermediate bounds."""
    return crown_bounds(model, x, eps, clip, spec=spec, intermediate="ibp", lower_only=lower_only)


def interval_spec_bounds(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    spec: torch.Tensor,
) -> Box:
    """IBP bounds on ``spec @ outputs`` (batch × m), the last Linear layer folded into ``spec``.

    At least as tight as bounding ``spec`` over the output box of :func:`interval_bounds`.
    """
    layers = _crown_layers(model)
    ibp = interval_trace(nn.Sequential(*layers), x, eps, clip)
    boxes = [((x - eps).clamp(*clip), (x + eps).clamp(*clip)), *ibp]
    _check_spec(spec, x, boxes[-1][0][0].numel())
    return _spec_interval(layers, boxes, spec.to(x.dtype))


def margin_spec(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Specification rows e_y − e_j for every class j (the row j = y is zero): B × k × k.

    Lower bounds of ``spec @ logits`` bound the margins z_y − z_j; the example is certified
    when every one with j ≠ y is positive.
    """
    eye = torch.eye(num_classes, device=y.device)
    return F.one_hot(y, num_classes).float().unsqueeze(1) - eye.unsqueeze(0)


def worst_case_from_margins(lower_margins: torch.Tensor) -> torch.Tensor:
    """Worst-case logits ẑ_j = −lower(z_y − z_j) from :func:`margin_spec` margin bounds.

    ẑ_y = 0 (its row of the specification is zero), and CE(ẑ, y) is the verified robust
    cross-entropy of Wong & Kolter (2018) / Zhang et al. (2020): an upper bound on the
    cross-entropy of every input in the ball.
    """
    return -lower_margins
