"""The gap attack, label-only (Yeom et al. 2018; the baseline of Choquette-Choo et al. 2021):
a member if the target labels the example correctly."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target


@ATTACKS.register("gap")
@dataclasses.dataclass(kw_only=True)
class GapAttack(MembershipAttack):
    """Label-only: score = 1 if the predicted label is y, else 0 (one query per example).

    Its balanced accuracy is ½ + ½ (train accuracy − test accuracy): the generalisation gap, the
    floor every label-only attack must beat. It implies its own rule (member iff correct).
    """

    name = "gap"
    requires = Access.LABELS
    decision_threshold = 0.5

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        correct = target.predict(x) == y.to(target.device)
        return correct.double().cpu().numpy()
