"""Validation of the inputs shared by the membership metrics: ``(is_member, scores)``.

Bad input fails early with a message that says what is wrong (length, dtype, NaN, one class).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


def as_membership(values: ArrayLike, name: str) -> BoolArray:
    """Convert a boolean-like 1-D array to ``bool``; raise ``ValueError`` otherwise."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; membership metrics need at least one example")
    if arr.dtype == np.bool_:
        return arr.astype(np.bool_, copy=True)
    if arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must be boolean-like (bool, or numbers that are all 0 or 1), "
            f"got dtype {arr.dtype}"
        )
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(
            f"{name} must be boolean-like (all values 0 or 1), but {int(bad.sum())} "
            f"value(s) are not, e.g. {examples}"
        )
    return arr == 1


def as_scores(values: ArrayLike, name: str = "scores") -> FloatArray:
    """Convert a real 1-D array to finite ``float64``; raise ``ValueError`` otherwise."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; membership metrics need at least one example")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64, copy=True)
    n_nan = int(np.isnan(out).sum())
    if n_nan:
        raise ValueError(
            f"{name} contains {n_nan} NaN value(s) out of {out.size}; "
            "drop or impute them before computing membership metrics"
        )
    n_inf = int(np.isinf(out).sum())
    if n_inf:
        raise ValueError(
            f"{name} contains {n_inf} infinite value(s) out of {out.size}; "
            "clip them to finite values (thresholds use +/-inf as 'nobody'/'everybody')"
        )
    return out


def check_both_classes(is_member: BoolArray) -> tuple[int, int]:
    n_pos = int(is_member.sum())
    n_neg = int(is_member.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        present = "members" if n_pos else "non-members"
        raise ValueError(
            f"is_member contains only {present} ({is_member.size} examples); "
            "membership metrics need both members and non-members"
        )
    return n_pos, n_neg


def check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )


def validate(is_member: ArrayLike, scores: ArrayLike) -> tuple[BoolArray, FloatArray, int, int]:
    member = as_membership(is_member, "is_member")
    score = as_scores(scores, "scores")
    check_same_length(member, score, "is_member", "scores")
    n_pos, n_neg = check_both_classes(member)
    return member, score, n_pos, n_neg


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN; use a real number or +/-inf")
    return t


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float in (0, 1), else a ValueError."""
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def check_delta(delta: float) -> float:
    """``delta`` as a float in [0, 1), else a ValueError."""
    d = float(delta)
    if not 0.0 <= d < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    return d


def as_count(value: int, name: str) -> int:
    """``value`` as a non-negative int (no bool, no fraction), else a ValueError naming it."""
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(value)
