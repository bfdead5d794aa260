"""Defences of a gradient-inversion study compared at equal utility loss (Liu et al. 2025's
evaluation metric, Fig. 3), from the study's defence points (report dicts with ``defence``,
``label_defence``, ``rank``, ``best`` and ``utility``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from privlab.federated.utility_matching import curve, utility_matched_table

#: what a reconstruction is scored by (image_quality's matched summary + identification)
QUALITY = ("psnr", "rmse", "ssim", "label_accuracy", "label_set_accuracy", "identified")
#: for each quality: does a larger value mean a stronger attack?
HIGHER_IS_STRONGER = {q: q != "rmse" for q in QUALITY}


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def matched_comparison(
    points: list[dict[str, Any]], levels: int, noise_floor: float = 0.0
) -> dict[str, Any]:
    """Defences compared at equal utility loss, by the best RMSE and the best PSNR.

    Each defence's curve (strength order, utility loss made monotone) starts at the undefended
    point (rank −1, utility loss 0) when there is one. A (monotone-fitted) utility loss within
    ``noise_floor`` (the spread of undefended FedAvg runs over seeds), or negative, counts as no
    loss. The levels are the fitted utility losses themselves (thinned to ``levels`` by
    quantiles), so every level is one some defence reached; a defence is compared only at the
    levels its own sweep covers (no extrapolation), so the best defence of a level is the best
    of those that reach it. Strengths that end at the same utility loss count as the strongest
    of them (a defender picks it at that cost).
    """
    curves = _curves(points)
    out: dict[str, Any] = {}
    for q, by_defence in curves.items():
        if by_defence:
            out[q] = _compare(by_defence, q, levels, noise_floor)
    return out


Curves = dict[str, dict[str, list[tuple[float, float, float]]]]


def _curves(points: list[dict[str, Any]]) -> Curves:
    """Per quality, per defence: (strength rank, utility loss, best attack's value); the
    undefended point (rank −1, loss 0) starts every defence's curve when there is one."""
    curves: Curves = {"rmse": {}, "psnr": {}}
    for p in points:
        if p["defence"] == "none" or not p.get("utility"):
            continue
        loss = p["utility"]["utility_loss"]
        for q, by_defence in curves.items():
            value = p["best"].get(q)
            if _finite(value) and _finite(loss):
                by_defence.setdefault(p["label_defence"], []).append((p["rank"], loss, value))
    none = [p for p in points if p["defence"] == "none" and p.get("utility")]
    for q, by_defence in curves.items():
        value = none[0]["best"].get(q) if none else None
        if value is not None and _finite(value):
            for pts in by_defence.values():
                pts.append((-1.0, 0.0, float(value)))
    return curves


def _compare(
    by_defence: dict[str, list[tuple[float, float, float]]],
    quality: str,
    levels: int,
    noise_floor: float,
) -> dict[str, Any]:
    """The matched table of one quality at the measured utility-loss levels, and the levels
    each defence wins among two or more compared."""
    measured = np.unique(
        [k for pts in by_defence.values() for k in curve(pts, noise_floor=noise_floor)[0]]
    )
    if len(measured) > levels:
        measured = np.unique(np.quantile(measured, np.linspace(0, 1, levels), method="nearest"))
    rows = utility_matched_table(
        by_defence,
        measured.tolist(),
        attack_higher_is_better=HIGHER_IS_STRONGER[quality],
        merge="strongest",
        noise_floor=noise_floor,
    )
    wins: dict[str, int] = {}
    for row in rows:
        compared = [d for d in by_defence if _finite(row.get(d))]
        if row["best_defence"] is not None and len(compared) > 1:
            wins[row["best_defence"]] = wins.get(row["best_defence"], 0) + 1
    return {"rows": rows, "wins": wins}
