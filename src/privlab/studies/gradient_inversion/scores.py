"""Scoring a batch's reconstructions (matched PSNR / RMSE / SSIM / labels, identification) and
picking the strongest attack per quality (Liu et al. report the best RMSE of the attacks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from privlab.metrics.image_quality import identification_rate, match_reconstructions
from privlab.studies.gradient_inversion.defence_comparison import HIGHER_IS_STRONGER, QUALITY


def score_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rows: list[int],
    pool: torch.Tensor,
    data_range: float,
) -> tuple[dict[str, Any], np.ndarray]:
    """Quality of one batch's reconstructions and the permutation putting them in batch order
    (``pool``: every client image, flattened, for the identification rate)."""
    matched = match_reconstructions(
        images, x, data_range=data_range, recon_labels=labels, true_labels=y
    )
    summary = matched.summary()
    summary["identified"] = identification_rate(matched, images, rows, pool)
    summary["psnr"] = min(summary["psnr"], 99.0)  # identical images: cap the infinite PSNR
    return summary, matched.permutation


def mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def best_of(attacks: dict[str, Any]) -> dict[str, Any]:
    """The strongest attack's value of every quality (max PSNR, min RMSE, ...) and its name."""
    best: dict[str, Any] = {}
    for q in QUALITY:
        scored = {a: r[q] for a, r in attacks.items() if r.get(q) is not None}
        if not scored:
            best[q] = None
            continue
        pick = max if HIGHER_IS_STRONGER[q] else min
        name = pick(scored, key=lambda a: scored[a])
        best[q], best[f"{q}_attack"] = scored[name], name
    return best
