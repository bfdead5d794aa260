"""Adversarial-example confidence thresholding, I_A (Song et al. Eq. 18)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.features import (
    attack_budget,
    true_class_confidence,
    untargeted_probs,
)
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target


@ATTACKS.register("adversarial_confidence")
@dataclasses.dataclass(kw_only=True)
class AdversarialConfidence(MembershipAttack):
    """I_A: score = F(x_adv)_y with x_adv from untargeted PGD inside B_ε(x).

    ε defaults to the target's training budget (Kerckhoffs); set ``eps`` to study an attacker
    who does not know it (§7.1, Fig. 5).
    """

    name = "adversarial_confidence"
    requires = Access.PROBS | Access.INPUT_GRADIENTS
    eps: float | None = None
    steps: int = 10
    step_size: float | None = None

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        eps = attack_budget(target, self.eps)
        probs = untargeted_probs(target, x, y, eps=eps, steps=self.steps, step_size=self.step_size)
        return true_class_confidence(probs, y).cpu().numpy()
