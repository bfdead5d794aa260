"""DP-SGD's clipped sum without per-example gradients, for models whose every parameter is a
linear layer's (an MLP): the "ghost clipping" of Goodfellow (2015) and Li et al. (2022).

For a linear layer z = W·a + b seen by example k with input a_k and output gradient
δ_k = ∂ℓ_k/∂z_k, the example's weight gradient is the outer product δ_k·a_kᵀ, so

    ‖∇_W ℓ_k‖² = ‖δ_k‖²·‖a_k‖²,   ‖∇_b ℓ_k‖² = ‖δ_k‖²,

and the clipped sum Σ_k c_k·δ_k·a_kᵀ is one matrix product (c_k = min(1, C/‖g_k‖)). One
forward and one backward pass to the layers' outputs give every δ_k, so nothing of size
examples × parameters is built: on a 784–256–10 MLP with batches of 8 this is several times
faster than torch.func's per-example gradients, with the same result up to rounding.

:func:`linear_clipped_sum` returns None where the shortcut does not hold (a parameter outside
a linear layer, a layer applied twice, inputs with more than one feature axis, an in-place
operation on a layer's output): the caller then computes per-example gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from privlab.training import dp

Params = dict[str, torch.Tensor]


def _linear_owners(
    model: nn.Module, names: list[str]
) -> tuple[dict[str, nn.Linear], dict[str, tuple[str, str]]] | None:
    """The linear layers that own the parameters ``names`` (by module path) and each name's
    (path, "weight" or "bias"), or None if some parameter is not a linear layer's."""
    modules = dict(model.named_modules())
    owners: dict[str, nn.Linear] = {}
    parts: dict[str, tuple[str, str]] = {}
    for name in names:
        path, _, leaf = name.rpartition(".")
        module = modules.get(path)
        if not isinstance(module, nn.Linear) or leaf not in ("weight", "bias"):
            return None
        owners[path], parts[name] = module, (path, leaf)
    return owners, parts


def _layer_io(
    model: nn.Module, owners: dict[str, nn.Linear], params: Params, x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]]]:
    """The logits and every owned layer's (input, output, the output's version) of one
    forward pass (a later in-place operation on the output changes its version)."""
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {p: [] for p in owners}
    hooks = [
        layer.register_forward_hook(
            lambda _m, args, out, path=path: seen[path].append((args[0], out, out._version))
        )
        for path, layer in owners.items()
    ]
    try:
        buffers = {n: b.detach() for n, b in model.named_buffers()}
        logits = functional_call(model, (params, buffers), (x,))
    finally:
        for hook in hooks:
            hook.remove()
    return logits, seen


def linear_clipped_sum(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, clip: float
) -> Params | None:
    """Σ_k clip_C(∇_θ CE(f_θ(x_k), y_k)) per parameter of ``params`` (exact clipping, as
    :func:`privlab.training.dp.clipped_sum` with no stabiliser), or None where the model is
    not linear layers only (see the module docstring)."""
    names = list(params)
    found = _linear_owners(model, names)
    if found is None:
        return None
    owners, parts = found
    live = {n: params[n].detach().requires_grad_(True) for n in names}
    logits, seen = _layer_io(model, owners, live, x)
    if any(
        len(calls) != 1 or calls[0][0].dim() != 2 or calls[0][1]._version != calls[0][2]
        for calls in seen.values()
    ):
        return None  # a layer used twice, inputs with more axes, an in-place activation
    paths = list(owners)
    outputs = [seen[p][0][1] for p in paths]
    loss = F.cross_entropy(logits, y, reduction="sum")  # row k's gradient is example k's
    deltas = dict(zip(paths, torch.autograd.grad(loss, outputs), strict=True))
    inputs = {p: seen[p][0][0].detach() for p in paths}
    sq_norms = torch.zeros(len(x), dtype=logits.dtype, device=logits.device)
    for path, leaf in parts.values():
        d_sq = deltas[path].pow(2).sum(1)
        sq_norms += d_sq * inputs[path].pow(2).sum(1) if leaf == "weight" else d_sq
    factor = dp.clip_factors(sq_norms.sqrt(), clip, stabiliser=0.0)
    summed: Params = {}
    for name, (path, leaf) in parts.items():
        scaled = deltas[path] * factor[:, None]
        summed[name] = scaled.T @ inputs[path] if leaf == "weight" else scaled.sum(0)
    return summed
