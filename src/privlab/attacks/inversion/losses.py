"""Identity losses of model-inversion attacks (lower = the image looks more like class t)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def poincare_loss(logits: torch.Tensor, target: torch.Tensor, xi: float = 1e-4) -> torch.Tensor:
    """Per-example Poincaré loss of Plug-and-Play attacks (Struppek et al. 2022).

    u = logits/‖logits‖₁, v = clip(onehot(t) − ξ, 0, 1), δ = 2‖u − v‖² / ((1 − ‖u‖²)(1 − ‖v‖²)),
    loss = arccosh(1 + δ): the hyperbolic distance between the normalised logits and the
    one-hot point, which keeps pulling even when the softmax has saturated.
    """
    u = logits / logits.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    v = (F.one_hot(target, logits.shape[1]).to(logits.dtype) - xi).clamp(0, 1)
    num = (u - v).pow(2).sum(1)
    den = (1 - u.pow(2).sum(1)) * (1 - v.pow(2).sum(1))
    delta = 2 * num / den.clamp_min(1e-12)
    return torch.acosh(1 + delta)


def identity_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``poincare``, ``ce`` (cross-entropy, GMI) or ``max_margin`` (logit margin, Yuan et al.)."""
    if kind == "poincare":
        return poincare_loss(logits, target)
    if kind == "ce":
        return F.cross_entropy(logits, target, reduction="none")
    if kind == "max_margin":
        true = logits.gather(1, target[:, None])[:, 0]
        other = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf"))
        return other.amax(1) - true
    raise ValueError(f"unknown identity loss {kind!r}; use poincare, ce or max_margin")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-example anisotropic total variation (an image prior: neighbouring pixels agree)."""
    if x.dim() < 4:
        return torch.zeros(len(x), device=x.device)
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    return dh + dw
