"""When FedAvg has converged: a patience rule on the training loss (Liu et al. 2025 measure
utility by "the final training loss of the original task", which presumes training that has
run its course, not a fixed budget cut short).

After every round the global model's mean cross-entropy on the whole training split is
recorded. A round *improves* when its loss is below the reference by more than ``tolerance``
(nats); the reference is the loss of the last improving round (the first round's at the start),
so a slow drift of many small decreases still counts once it adds up to ``tolerance``. Training
has converged when ``patience`` rounds in a row bring no improvement; it stops there, or at
``max_rounds`` (then ``converged`` is False). A non-finite loss never improves.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True, kw_only=True)
class Convergence:
    """Run until the training loss stops improving by ``tolerance`` for ``patience`` rounds,
    at most ``max_rounds``."""

    max_rounds: int = 1000
    patience: int = 50
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be ≥ 1, got {self.max_rounds}")
        if self.patience < 1:
            raise ValueError(f"patience must be ≥ 1, got {self.patience}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a finite value ≥ 0, got {self.tolerance}")

    def monitor(self) -> ConvergenceMonitor:
        return ConvergenceMonitor(self)


class ConvergenceMonitor:
    """Feed it each round's training loss; :meth:`update` says when to stop."""

    def __init__(self, rule: Convergence) -> None:
        self.rule = rule
        self.losses: list[float] = []
        self.reference = math.inf
        self.last_improved = 0  # rounds are counted from 1; 0: none yet
        self.converged = False

    def update(self, loss: float) -> bool:
        """Record the loss after one more round; True when training should stop."""
        self.losses.append(float(loss))
        rounds = len(self.losses)
        if math.isfinite(loss) and (
            self.reference == math.inf or loss < self.reference - self.rule.tolerance
        ):
            self.reference, self.last_improved = float(loss), rounds
        if rounds - self.last_improved >= self.rule.patience:
            self.converged = True
            return True
        return rounds >= self.rule.max_rounds

    def summary(self) -> dict[str, object]:
        """What a report records: the rule, rounds run, whether it converged, the curve."""
        return {
            "until": "converged",
            "max_rounds": self.rule.max_rounds,
            "patience": self.rule.patience,
            "tolerance": self.rule.tolerance,
            "converged": self.converged,
            "last_improved_round": self.last_improved,
            "train_loss_curve": list(self.losses),
        }
