"""Verified worst-case confidence thresholding, I_V (Song et al. Eq. 20).

Score = the lowest probability of the true label that the verifier can certify over B_ε(x).
With certified lower bounds m_j on the margins z_y − z_j,
p_y^wc = 1 / (1 + Σ_{j≠y} exp(−m_j)); for interval bounds [l, u] this is
exp(l_y) / (exp(l_y) + Σ_{j≠y} exp(u_j)) or tighter. Following the paper, a verifiably
trained model is attacked with the verifier it was trained with (``verifier: auto``); any
verifier of :mod:`privlab.verify.verifiers` can be named instead, for any model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.features import attack_budget, true_class_confidence
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target
from privlab.verify.verifiers import check_verifier


@ATTACKS.register("verified_confidence")
@dataclasses.dataclass(kw_only=True)
class VerifiedConfidence(MembershipAttack):
    """I_V: score = the verified worst-case confidence on the true label in B_ε(x)."""

    name = "verified_confidence"
    requires = Access.PROBS | Access.WEIGHTS
    eps: float | None = None
    #: "auto" = the target's training verifier (IBP for models not trained verifiably)
    verifier: str = "auto"

    def __post_init__(self) -> None:
        if self.verifier != "auto":
            check_verifier(self.verifier)

    def verifier_for(self, target: Target) -> str:
        if self.verifier != "auto":
            return self.verifier
        return target.info.verifier or "ibp"

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        eps = attack_budget(target, self.eps)
        worst = target.verified_worst_case_logits(x, y, eps, self.verifier_for(target))
        return true_class_confidence(worst.double().softmax(dim=1), y).cpu().numpy()
