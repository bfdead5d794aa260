"""Attack interfaces. Membership attacks map examples to scores (higher = member)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch

from privlab.threat_model import Access, Knowledge, Target


@dataclasses.dataclass(kw_only=True)
class MembershipAttack:
    """Base class. Subclasses are dataclasses whose fields are the attack's hyperparameters.

    ``fit(knowledge)`` learns from the attacker's reference data (shadow models or revealed
    members); ``score(target, x, y)`` returns one float per example, higher meaning "member".
    """

    name: ClassVar[str] = "membership_attack"
    family: ClassVar[str] = "membership"
    requires: ClassVar[Access] = Access.PROBS
    #: the attack cannot run without labelled reference data (it trains on it)
    needs_reference: ClassVar[bool] = False
    #: the attack queries reference models the attacker trained itself (LiRA, RMIA, Shokri)
    needs_reference_models: ClassVar[bool] = False
    #: a decision threshold the attack itself implies (e.g. P(member) ≥ 0.5); None = fit one
    decision_threshold: ClassVar[float | None] = None
    batch_size: int = 512

    def fit(self, knowledge: Knowledge) -> MembershipAttack:
        if self.needs_reference and not knowledge.reference:
            raise ValueError(
                f"attack {self.name!r} trains on labelled reference data: set "
                "threat_model.reference to 'shadow' or 'known'"
            )
        return self

    def score(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        target.require(self.requires, f"attack {self.name!r}")
        scores = (
            np.concatenate(
                [
                    self._score_batch(
                        target, x[i : i + self.batch_size], y[i : i + self.batch_size]
                    )
                    for i in range(0, len(y), self.batch_size)
                ]
            )
            if len(y)
            else np.zeros(0)
        )
        return np.nan_to_num(scores.astype(np.float64), nan=-1e300, neginf=-1e300, posinf=1e300)

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }
