"""Verified worst-case confidence thresholding, I_V (Song et al. Eq. 20).

Score = the lowest probability of the true label that the verifier can certify over B_ε(x):
with interval logit bounds [l, u], p_y^wc = exp(l_y) / (exp(l_y) + Σ_{j≠y} exp(u_j)).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.features import attack_budget, true_class_confidence
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target
from privlab.verify import worst_case_logits


@ATTACKS.register("verified_confidence")
@dataclasses.dataclass(kw_only=True)
class VerifiedConfidence(MembershipAttack):
    """I_V: score = the IBP-verified worst-case confidence on the true label in B_ε(x)."""

    name = "verified_confidence"
    requires = Access.PROBS | Access.WEIGHTS
    eps: float | None = None

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        lower, upper = target.interval_bounds(x, attack_budget(target, self.eps))
        worst = worst_case_logits(lower, upper, y.to(lower.device)).double().softmax(dim=1)
        return true_class_confidence(worst, y).cpu().numpy()
