"""Verifiers by name: certified lower bounds on the margins z_y − z_j over B_ε(x).

Every verifier bounds ``margin_spec(y) @ logits`` directly (tighter than subtracting output
bounds). The verified worst-case logits ẑ_j = −lower(z_y − z_j) give

* the verified accuracy: the example is certified when every margin with j ≠ y is positive;
* I_V (Song et al. Eq. 20): softmax(ẑ)_y is the lowest true-class probability the verifier
  can certify anywhere in the ball, since p_y = 1 / (1 + Σ_{j≠y} exp(z_j − z_y)).

A model is attacked and evaluated with the verifier it was trained with (its regime's
``verifier``), IBP for the others.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from privlab.verify.crown import (
    crown_bounds,
    crown_ibp_bounds,
    interval_spec_bounds,
    margin_spec,
    worst_case_from_margins,
)
from privlab.verify.intervals import Box
from privlab.verify.zonotope import zonotope_bounds

SpecBounds = Callable[..., Box]

VERIFIERS: dict[str, SpecBounds] = {
    "ibp": interval_spec_bounds,
    "crown_ibp": crown_ibp_bounds,
    "crown": crown_bounds,
    "zonotope": zonotope_bounds,
}


def check_verifier(name: str) -> str:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {', '.join(VERIFIERS)}")
    return name


def margin_lower_bounds(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    verifier: str = "ibp",
    num_classes: int | None = None,
) -> torch.Tensor:
    """B × k lower bounds of z_y − z_j over B_ε(x) ∩ [clip] (0 in column y)."""
    bound = VERIFIERS[check_verifier(verifier)]
    k = num_classes if num_classes is not None else int(model(x[:1]).shape[1])
    spec = margin_spec(y, k).to(x.dtype)
    lower, _ = bound(model, x, eps, clip, spec=spec)
    return lower


def verified_worst_case_logits(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    *,
    verifier: str = "ibp",
) -> torch.Tensor:
    """ẑ with ẑ_y = 0 and ẑ_j = −lower(z_y − z_j): argmax ẑ = y iff the example is certified."""
    margins = margin_lower_bounds(model, x, y, eps, clip, verifier=verifier)
    return worst_case_from_margins(margins)
