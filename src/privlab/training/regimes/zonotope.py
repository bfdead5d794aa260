"""Zonotope verified training (DiffAI, Mirman et al. ICML 2018; Song et al. "Abs-Based Verify").

The robust loss is Song, Shokri & Mittal (CCS 2019) Eq. 14, a softplus of the verified
worst-case logit margin over B_ε(x):

    ℓ′(x, y) = log(1 + exp(max_{y′ ≠ y} ub(z_y′ − z_y))),

where ub(z_y′ − z_y) is the upper bound of the margin computed through the hybrid zonotope
domain (:func:`privlab.verify.zonotope.zonotope_bounds` on the margins z_y − z_y′ of
:func:`privlab.verify.crown.margin_spec`, which is tighter than subtracting output bounds).
The batch loss is

    κ·CE(F(x), y) + (1 − κ)·mean ℓ′(x, y).

The ε ramp and κ schedule are exactly those of the IBP regime (warm-up of natural training,
then ε: 0 → eps and κ: 1 → kappa linearly over ``ramp`` of training), inherited from
:class:`~privlab.training.regimes.ibp.IntervalBoundTraining`. Memory grows with the number of
input coordinates (one generator each): see :mod:`privlab.verify.zonotope`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regimes.ibp import IntervalBoundTraining
from privlab.verify.crown import margin_spec
from privlab.verify.zonotope import zonotope_bounds


@REGIMES.register("zonotope")
@dataclasses.dataclass(frozen=True, kw_only=True)
class ZonotopeTraining(IntervalBoundTraining):
    """DiffAI verified training: natural CE mixed with a softplus of the zonotope margin bound."""

    name = "zonotope"
    verifier: ClassVar[str] = "zonotope"

    def robust_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int
    ) -> torch.Tensor:
        lower, _ = zonotope_bounds(model, x, eps, self.clip, spec=margin_spec(y, num_classes))
        rivals = (-lower).masked_fill(F.one_hot(y, num_classes).bool(), float("-inf"))
        return F.softplus(rivals.amax(dim=1)).mean()  # ub(z_y′ − z_y) = −lb(z_y − z_y′)
