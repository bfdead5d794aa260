"""Hybrid zonotope bounds (DiffAI: Mirman, Gehr & Vechev, ICML 2018; DeepZ ReLU relaxation).

Song, Shokri & Mittal (CCS 2019) call verified training in this domain "Abs-Based Verify".

The domain
----------
A hybrid zonotope over a layer's activations (shape ``S`` per example) is a triple

* centre ``c`` (B × S),
* generator matrix ``G`` (B × n_gen × S),
* box radius ``b ≥ 0`` (B × S),

representing the set ``{c + Σ_i e_i G_i + β ⊙ b : e ∈ [−1, 1]^n_gen, β ∈ [−1, 1]^S}``.
The generators are shared error terms, so they keep the correlations between neurons that
an interval (box) loses; the box term collects independent per-neuron errors. Its concrete
bounds are ``c ± (Σ_i |G_i| + b)``.

Propagation starts from the input box B_ε(x) ∩ [lo, hi]: ``c`` is the box centre, one
generator per input coordinate (``G = diag(radius)``), ``b = 0``. Then, layer by layer:

* affine layers (Linear, Conv2d, AvgPool2d, AdaptiveAvgPool2d, eval-mode BatchNorm, Flatten)
  are exact: the layer (with bias) maps ``c``, the layer without bias maps every generator,
  and the layer with absolute weights ``|W|`` (no bias) maps the box term;
* Identity and Dropout are the identity (as in :mod:`privlab.verify.intervals`);
* ReLU uses the minimal-area (DeepZ / DiffAI) relaxation. With concrete pre-activation bounds
  ``l, u``: stable neurons are exact (``u ≤ 0``: 0; ``l ≥ 0``: identity); an unstable neuron
  (``l < 0 < u``) becomes ``λ·x + μ ± μ`` with ``λ = u / (u − l)`` and ``μ = −λ·l / 2``. The new
  error term ``± μ`` goes into the box term ``b`` (the "hybrid" part of DiffAI's
  HybridZonotope), so the number of generators never grows and memory stays bounded;
* MaxPool2d falls back to the box domain: the concrete bounds are pooled (max is monotone)
  and the result is a box, i.e. the generators are dropped (n_gen → 0). Every later layer
  then computes exactly what IBP computes (ReLU switches to the interval ReLU, which is
  optimal for a box), so a model with a MaxPool is bounded like IBP from the pool on: sound,
  but the correlations are lost there.

Relation to IBP
---------------
Affine layers are never looser than interval bound propagation (an interval pushes
``|W₂||W₁|r`` where the zonotope pushes ``|W₂W₁|r``), and bounding a margin ``z_j − z_y``
through the zonotope (``spec``) cancels shared error terms that subtracting output bounds
cannot. The ReLU relaxation, however, is *not* always tighter than IBP's: its lower line
``λ·x`` lets an unstable neuron's concrete lower bound go negative (λ·l < 0, where IBP says
0), and that slack compounds in deep networks. Nothing here intersects with IBP bounds; on
average the zonotope is tighter for shallow networks and for margins, but not on every
neuron of every network.

Memory
------
The generators dominate: a layer with ``N`` activations costs ``B · n_in · N`` numbers, with
``n_in`` the number of input coordinates. With autograd every layer's generators are kept
for the backward pass, so training needs about
``4 bytes · B · n_in · Σ_layers N_layer`` (float32), plus one layer's ``|G|`` temporary at
each ReLU. This suits small inputs: 8×8 digits (64 generators) at any batch size; 28×28
MNIST (784 generators) only with small batches or small networks (an MLP 784-512-512-10
needs ≈ 9 MB per example, a 16-channel 28×28 convolution ≈ 39 MB per example per layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from privlab.verify.intervals import Box, flat_layers

Map = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class HybridZonotope:
    """``{c + Σ_i e_i G_i + β ⊙ b}``: centre B×S, generators B×n_gen×S, box radius B×S."""

    centre: torch.Tensor
    generators: torch.Tensor
    box: torch.Tensor

    @classmethod
    def from_box(cls, lower: torch.Tensor, upper: torch.Tensor) -> HybridZonotope:
        """The box [lower, upper] with one generator per coordinate (G = diag(radius))."""
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        batch, n = radius.shape[0], radius[0].numel()
        generators = torch.diag_embed(radius.reshape(batch, n)).reshape(batch, n, *radius.shape[1:])
        return cls(centre, generators, torch.zeros_like(centre))

    def radius(self) -> torch.Tensor:
        return self.generators.abs().sum(dim=1) + self.box

    def concretize(self) -> Box:
        """Concrete (lower, upper) bounds of every coordinate."""
        radius = self.radius()
        return self.centre - radius, self.centre + radius

    def affine(self, with_bias: Map, without_bias: Map, absolute: Map) -> HybridZonotope:
        """Image under an affine map given as its three parts (see the module docstring)."""
        return HybridZonotope(
            with_bias(self.centre),
            _per_generator(without_bias, self.generators),
            absolute(self.box),
        )


def _per_generator(fn: Map, generators: torch.Tensor) -> torch.Tensor:
    """Apply a per-example linear map to every generator (folding n_gen into the batch)."""
    batch, n = generators.shape[:2]
    shape = generators.shape[2:]
    if n == 0:  # no generators left (after a MaxPool): only the output shape is needed
        out_shape = fn(generators.new_zeros(1, *shape)).shape[1:]
        return generators.new_zeros(batch, 0, *out_shape)
    out = fn(generators.reshape(batch * n, *shape))
    return out.reshape(batch, n, *out.shape[1:])


def _batch_norm(layer: nn.BatchNorm1d | nn.BatchNorm2d, z: HybridZonotope) -> HybridZonotope:
    var = torch.as_tensor(layer.running_var)
    gamma = layer.weight if layer.weight is not None else torch.ones_like(var)
    scale = gamma / torch.sqrt(var + layer.eps)
    view = (1, -1) + (1,) * (z.centre.dim() - 2)
    return z.affine(
        layer,
        lambda t: t * scale.view(view),
        lambda t: t * scale.abs().view(view),
    )


def _relu(z: HybridZonotope) -> HybridZonotope:
    lower, upper = z.concretize()
    if z.generators.shape[1] == 0:  # a plain box (after a MaxPool): the exact interval ReLU
        lower, upper = lower.clamp_min(0), upper.clamp_min(0)
        return HybridZonotope((upper + lower) / 2, z.generators, (upper - lower) / 2)
    active = lower >= 0
    unstable = (lower < 0) & (upper > 0)
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    lam = torch.where(active, torch.ones_like(upper), torch.where(unstable, upper / denom, 0.0))
    mu = torch.where(unstable, -lam * lower / 2, 0.0)
    return HybridZonotope(lam * z.centre + mu, lam.unsqueeze(1) * z.generators, lam * z.box + mu)


def _to_box(z: HybridZonotope, fn: Map) -> HybridZonotope:
    """Monotone ``fn`` applied in the box domain; the result has no generators."""
    lower, upper = z.concretize()
    lower, upper = fn(lower), fn(upper)
    centre = (upper + lower) / 2
    empty = centre.new_zeros(centre.shape[0], 0, *centre.shape[1:])
    return HybridZonotope(centre, empty, (upper - lower) / 2)


def _step(layer: nn.Module, z: HybridZonotope) -> HybridZonotope:
    if isinstance(layer, nn.Linear):
        weight = layer.weight
        return z.affine(layer, lambda t: F.linear(t, weight), lambda t: F.linear(t, weight.abs()))
    if isinstance(layer, nn.Conv2d):
        conv = layer
        return z.affine(
            conv,
            lambda t: conv._conv_forward(t, conv.weight, None),
            lambda t: conv._conv_forward(t, conv.weight.abs(), None),
        )
    if isinstance(layer, nn.Flatten | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
        return z.affine(layer, layer, layer)  # linear, no bias, non-negative weights
    if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
        return _batch_norm(layer, z)
    if isinstance(layer, nn.ReLU):
        return _relu(z)
    if isinstance(layer, nn.MaxPool2d):
        return _to_box(z, layer)
    return z  # Identity, Dropout


def zonotope_trace(
    model: nn.Module, x: torch.Tensor, eps: float, clip: tuple[float, float] = (0.0, 1.0)
) -> list[HybridZonotope]:
    """The hybrid zonotope after every layer (nested Sequentials unrolled), input first."""
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return propagate(model, HybridZonotope.from_box((x - eps).clamp(*clip), (x + eps).clamp(*clip)))


def propagate(model: nn.Module, z: HybridZonotope) -> list[HybridZonotope]:
    """Push the hybrid zonotope ``z`` through ``model``: the zonotope after every layer, ``z``
    first."""
    layers = list(flat_layers(model))  # refuse unsupported models before any work
    trace = [z]
    for layer in layers:
        z = _step(layer, z)
        trace.append(z)
    return trace


def zonotope_bounds(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    spec: torch.Tensor | None = None,
) -> Box:
    """Lower and upper bounds on ``model``'s outputs over B_ε(x) ∩ [clip] (L∞), per example.

    With ``spec`` (B × m × n_out) the bounds are of ``spec @ outputs`` (B × m), computed
    through the zonotope (``spec`` applied to the centre and generators, ``|spec|`` to the box
    term), which is tighter than combining output bounds. Differentiable in the model's
    parameters; memory ≈ 4 bytes · B · n_in · Σ_layers N_layer (see the module docstring).
    """
    z = zonotope_trace(model, x, eps, clip)[-1]
    if spec is None:
        return z.concretize()
    batch, n_out = z.centre.shape[0], z.centre[0].numel()
    z = HybridZonotope(
        z.centre.reshape(batch, n_out),
        z.generators.reshape(batch, z.generators.shape[1], n_out),
        z.box.reshape(batch, n_out),
    )
    if spec.dim() != 3 or spec.shape[0] != batch or spec.shape[2] != n_out:
        raise ValueError(
            f"spec must be batch × m × n_out = {batch} × m × {n_out}, got {tuple(spec.shape)}"
        )
    spec = spec.to(z.centre)
    return HybridZonotope(
        torch.einsum("bmk,bk->bm", spec, z.centre),
        torch.einsum("bmk,bgk->bgm", spec, z.generators),
        torch.einsum("bmk,bk->bm", spec.abs(), z.box),
    ).concretize()
