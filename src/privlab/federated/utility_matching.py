"""Compare defences at equal utility loss (Liu et al. 2025, §4's evaluation metric, Fig. 3).

Every defence is swept over its strength parameter (noise multiplier, pruning rate, bits, ...);
each strength gives one point (strength, utility loss, attack success), with attack success
e.g. the best PSNR of the strongest attack (higher = more leakage) or RMSE (higher = less).
A defence's curve is read as attack success as a function of utility loss, and the defences
are compared at common utility-loss levels: "for the same level of utility loss, gradient
pruning has the best defending effect".

Reading a curve: points are ordered by strength; measured utility loss is noisy and need not
increase with strength, so it is first made non-decreasing in strength by isotonic regression
(pool-adjacent-violators, :func:`isotonic`). Points that end up at the same utility loss are
merged (their attack success averaged), and attack success is interpolated piecewise linearly
(or with the shape-preserving PCHIP, which stays monotone wherever the data are) between the
remaining points. Levels outside a curve's measured range give NaN: no extrapolation.

All functions are pure (NumPy in, NumPy / plain Python out).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Interpolation = Literal["linear", "pchip"]
Merge = Literal["mean", "strongest"]


@dataclasses.dataclass(frozen=True)
class DefencePoint:
    """One defence at one strength: its utility loss and the attack's success against it."""

    strength: float
    utility_loss: float
    attack_success: float

    def __post_init__(self) -> None:
        for field in ("strength", "utility_loss", "attack_success"):
            if not math.isfinite(float(getattr(self, field))):
                raise ValueError(f"{field} must be finite, got {getattr(self, field)}")


PointLike = DefencePoint | Sequence[float]


def as_points(points: Sequence[PointLike]) -> list[DefencePoint]:
    """(strength, utility loss, attack success) triples or DefencePoints, as DefencePoints."""
    out = []
    for p in points:
        if isinstance(p, DefencePoint):
            out.append(p)
            continue
        if len(p) != 3:
            raise ValueError(
                f"a point is (strength, utility_loss, attack_success), got {len(p)} values: {p}"
            )
        out.append(DefencePoint(float(p[0]), float(p[1]), float(p[2])))
    return out


def isotonic(values: Sequence[float], weights: Sequence[float] | None = None) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (PAVA)."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError("values and weights must be 1-d of the same length")
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    means: list[float] = []
    sizes: list[float] = []
    counts: list[int] = []
    for value, weight in zip(v.tolist(), w.tolist(), strict=True):
        means.append(value)
        sizes.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, s2, c2 = means.pop(), sizes.pop(), counts.pop()
            m1, s1, c1 = means.pop(), sizes.pop(), counts.pop()
            means.append((m1 * s1 + m2 * s2) / (s1 + s2))
            sizes.append(s1 + s2)
            counts.append(c1 + c2)
    return np.repeat(np.asarray(means), counts)


def curve(
    points: Sequence[PointLike], merge: Merge = "mean", noise_floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A defence's (utility loss, attack success) knots: sorted by strength, utility loss made
    non-decreasing (:func:`isotonic`), points with equal utility loss merged: their mean
    success (``merge="mean"``), or the strongest of them (``"strongest"``: at equal cost a
    defender picks the largest strength). Fitted utility losses at or below ``noise_floor``
    (the run-to-run spread of the utility measurement) become 0: no measurable loss."""
    pts = sorted(as_points(points), key=lambda p: p.strength)
    if not pts:
        raise ValueError("a defence needs at least one point")
    loss = isotonic([p.utility_loss for p in pts])
    loss = np.where(loss <= noise_floor, 0.0, loss)
    success = np.asarray([p.attack_success for p in pts], dtype=float)
    knots, inverse = np.unique(loss, return_inverse=True)
    if merge == "strongest":
        strongest = np.zeros(len(knots), dtype=int)
        np.maximum.at(strongest, inverse, np.arange(len(inverse)))  # points are in strength order
        merged = success[strongest]
    elif merge == "mean":
        merged = np.bincount(inverse, weights=success) / np.bincount(inverse)
    else:
        raise ValueError(f"unknown merge {merge!r}; use 'mean' or 'strongest'")
    return knots, merged


def attack_at_utility(
    points: Sequence[PointLike],
    utility_losses: Sequence[float] | np.ndarray,
    *,
    method: Interpolation = "linear",
    merge: Merge = "mean",
    noise_floor: float = 0.0,
) -> np.ndarray:
    """A defence's attack success interpolated at the given utility losses (NaN outside the
    range its points cover)."""
    knots, success = curve(points, merge, noise_floor)
    at = np.asarray(utility_losses, dtype=float)
    out = np.full(at.shape, np.nan)
    inside = (at >= knots[0]) & (at <= knots[-1])
    if len(knots) == 1:
        out[inside] = success[0]
        return out
    if method == "linear":
        out[inside] = np.interp(at[inside], knots, success)
    elif method == "pchip":
        from scipy.interpolate import PchipInterpolator

        out[inside] = PchipInterpolator(knots, success, extrapolate=False)(at[inside])
    else:
        raise ValueError(f"unknown interpolation {method!r}; use 'linear' or 'pchip'")
    return out


def common_utility_range(curves: Mapping[str, Sequence[PointLike]]) -> tuple[float, float]:
    """The utility-loss interval every defence's (monotone) curve covers, or ValueError."""
    if not curves:
        raise ValueError("need at least one defence")
    ranges = [curve(pts)[0] for pts in curves.values()]
    low, high = max(float(k[0]) for k in ranges), min(float(k[-1]) for k in ranges)
    if low > high:
        raise ValueError(
            f"the defences' utility-loss ranges do not overlap (common low {low:g} > high "
            f"{high:g}): sweep the strengths further"
        )
    return low, high


def utility_matched_table(
    curves: Mapping[str, Sequence[PointLike]],
    utility_losses: Sequence[float] | None = None,
    *,
    levels: int = 5,
    method: Interpolation = "linear",
    merge: Merge = "mean",
    noise_floor: float = 0.0,
    attack_higher_is_better: bool = True,
) -> list[dict[str, Any]]:
    """One row per utility-loss level: every defence's interpolated attack success and the
    best defence there (lowest success, or highest for an error metric such as RMSE with
    ``attack_higher_is_better=False``; NaN entries are skipped).

    Without ``utility_losses`` the levels are ``levels`` evenly spaced points of the common
    range (:func:`common_utility_range`).
    """
    if utility_losses is None:
        if levels < 1:
            raise ValueError(f"levels must be ≥ 1, got {levels}")
        low, high = common_utility_range(curves)
        grid = np.linspace(low, high, levels) if levels > 1 else np.asarray([low])
    else:
        grid = np.asarray(utility_losses, dtype=float)
    values = {
        name: attack_at_utility(pts, grid, method=method, merge=merge, noise_floor=noise_floor)
        for name, pts in curves.items()
    }
    rows: list[dict[str, Any]] = []
    for i, level in enumerate(grid.tolist()):
        row: dict[str, Any] = {"utility_loss": level}
        scores = {name: float(v[i]) for name, v in values.items()}
        row.update(scores)
        finite = {n: s for n, s in scores.items() if math.isfinite(s)}
        if finite:
            pick = min if attack_higher_is_better else max
            row["best_defence"] = pick(finite, key=lambda n: finite[n])
        else:
            row["best_defence"] = None
        rows.append(row)
    return rows
