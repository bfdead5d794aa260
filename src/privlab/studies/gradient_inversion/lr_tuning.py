"""Choosing a defence point's server learning rate (see
:class:`~privlab.studies.gradient_inversion.config.LrTuning`): the candidate rates and the
pick among their tuning runs, which train on the bundle's population, never on the members."""

from __future__ import annotations

import math
from typing import Any


def candidate_rates(base: float, factors: list[float]) -> list[tuple[float, float]]:
    """(factor, server rate = factor·base) for every factor, in the grid's order."""
    if not (base > 0 and math.isfinite(base)):
        raise ValueError(f"the base learning rate must be positive, got {base}")
    return [(float(f), float(f) * base) for f in factors]


def choose_rate(runs: list[tuple[float, float, float]], base: float) -> dict[str, Any]:
    """The tuning record from (factor, rate, final training loss on the tuning data) of every
    candidate: the least loss wins (the first in grid order on a tie; a non-finite loss, a
    diverged run, never wins; if every run diverged, the base rate is kept)."""
    if not runs:
        raise ValueError("no learning-rate candidates")
    finite = [r for r in runs if math.isfinite(r[2])]
    if finite:
        factor, rate, _ = min(finite, key=lambda r: r[2])
    else:
        factor, rate = 1.0, base
    return {
        "tuned": "server_lr",
        "data": "population",
        "base_server_lr": base,
        "factor": factor,
        "server_lr": rate,
        "candidates": [
            {"factor": f, "server_lr": r, "train_loss": loss if math.isfinite(loss) else None}
            for f, r, loss in runs
        ],
    }
