"""CROWN-IBP verified training (Zhang et al., ICLR 2020, "Towards Stable and Efficient Training
of Verifiably Robust Neural Networks").

The robust loss is the cross-entropy of the worst-case logits ẑ_j = −m_j(x, y) built from lower
bounds m_j on the margins z_y − z_j over B_ε(x) (ẑ_y = 0). The margin bounds mix a CROWN-IBP
bound (CROWN's backward pass from the margin specification, with IBP intermediate bounds) and
the IBP bound (the margin specification folded into the last layer), as in the CROWN-IBP
objective of Zhang et al.:

    m = β·m_CROWN-IBP + (1 − β)·m_IBP,   loss = κ·CE(F(x), y) + (1 − κ)·CE(ẑ(m), y).

The ε ramp and κ schedule are exactly those of the IBP regime (warm-up of natural training,
then ε: 0 → eps and κ: 1 → kappa linearly over ``ramp`` of training), inherited from
:class:`~privlab.training.regimes.ibp.IntervalBoundTraining`; over the same ramp β goes
linearly from ``beta_start`` to ``beta_end`` (1 → 0 in the paper: the tighter, costlier
CROWN-IBP bound stabilises the start, plain IBP finishes). The CROWN-IBP bound is intersected
with IBP's (never looser), and only its lower side is computed.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regimes.ibp import IntervalBoundTraining
from privlab.verify.crown import (
    crown_ibp_bounds,
    interval_spec_bounds,
    margin_spec,
    worst_case_from_margins,
)


@REGIMES.register("crown_ibp")
@dataclasses.dataclass(frozen=True, kw_only=True)
class CrownIBPTraining(IntervalBoundTraining):
    """CROWN-IBP verified training: natural CE mixed with the CE of CROWN-IBP/IBP margins."""

    name = "crown_ibp"
    verifier: ClassVar[str] = "crown_ibp"
    beta_start: float = 1.0  # weight of the CROWN-IBP bound when the ramp starts
    beta_end: float = 0.0  # ... and from the end of the ramp on

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("beta_start", "beta_end"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"{field} must be in [0, 1], got {getattr(self, field)}")

    def beta(self) -> float:
        """The current weight of the CROWN-IBP bound (its final value before any schedule)."""
        t = self._schedule.get("progress", 1.0)
        return self.beta_start + t * (self.beta_end - self.beta_start)

    def robust_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int
    ) -> torch.Tensor:
        spec = margin_spec(y, num_classes)
        margins, _ = interval_spec_bounds(model, x, eps, self.clip, spec=spec)
        beta = self.beta()
        if beta > 0:
            crown, _ = crown_ibp_bounds(model, x, eps, self.clip, spec=spec, lower_only=True)
            margins = beta * crown + (1.0 - beta) * margins
        return F.cross_entropy(worst_case_from_margins(margins), y)
