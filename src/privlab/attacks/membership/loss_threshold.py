"""Loss-threshold membership inference (Yeom et al. 2018): members have lower loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target


@ATTACKS.register("loss_threshold")
@dataclasses.dataclass(kw_only=True)
class LossThreshold(MembershipAttack):
    """Score = −ℓ(F(x), y): a member if the cross-entropy loss is below a threshold."""

    name = "loss_threshold"
    requires = Access.PROBS

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return (-target.loss(x, y)).cpu().numpy()
