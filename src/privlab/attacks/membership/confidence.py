"""Confidence thresholding on benign inputs, I_B (Song et al. Eq. 17; Yeom et al.)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.features import benign_probs, true_class_confidence
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target


@ATTACKS.register("confidence")
@dataclasses.dataclass(kw_only=True)
class BenignConfidence(MembershipAttack):
    """I_B: score = F(x)_y, the confidence on the true label; member if ≥ τ_B."""

    name = "confidence"
    requires = Access.PROBS

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return true_class_confidence(benign_probs(target, x), y).cpu().numpy()
