"""Reconstruction success as a hypothesis test (Maciazek & Allison, §2 and App. A).

A reconstruction R(θ) of a model trained on D = (Z_1..Z_N) *succeeds* when it is within τ of
some training image: min_i ℓ(Z_i, R(θ)) ≤ τ (ℓ = per-pixel MSE on images scaled to [−1, 1]).
Definition 1 then gives

    TPR_τ = P[min_i ℓ(Z_i, R(θ)) ≤ τ],   θ trained on D;
    FPR_τ = P[min_i ℓ(Z'_i, R(θ)) ≤ τ],  D' a fresh training set (or θ from a null model),

and varying τ traces the ROC; the paper reads TPR at FPR = 0.01. τ itself comes from the data:
the mean MSE between every validation image and its nearest training image. Under Gaussian
min-MSE distributions N(μ₀, σ₀²) (trained-on) and N(μ₁, σ₁²) (not), the threshold test has the
closed-form ROC of Eq. 6. A constant guess succeeds with TPR 1 − (1 − κ)^N: TPR alone says
little when N is large.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import erf, erfinv


def to_symmetric(x: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Images mapped to [−1, 1] (the paper's X/127.5 − 1)."""
    lo, hi = value_range
    return 2 * (x - lo) / (hi - lo) - 1


def pairwise_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a| × |b| per-pixel mean squared errors."""
    fa, fb = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    return torch.cdist(fa, fb).pow(2) / fa.shape[1]


def nn_mse_threshold(train: torch.Tensor, validation: torch.Tensor, chunk: int = 1024) -> float:
    """τ: the mean over validation images of the MSE to their nearest training image
    (``chunk`` validation images at a time, so memory stays bounded on a whole dataset)."""
    if len(train) == 0 or len(validation) == 0:
        raise ValueError("need training and validation images to set τ")
    nearest = [
        pairwise_mse(validation[i : i + chunk], train).min(1).values
        for i in range(0, len(validation), chunk)
    ]
    return float(torch.cat(nearest).mean())


def min_mse(reconstruction: torch.Tensor, candidates: torch.Tensor) -> float:
    """min_i ℓ(Z_i, R(θ)) for one reconstruction and a training set (or a class of it)."""
    return float(pairwise_mse(reconstruction[None], candidates).min())


def reconstruction_roc(
    trained_on: np.ndarray, not_trained_on: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, TPR, FPR) of the test "min-MSE ≤ τ" at every observed value."""
    pos, neg = np.asarray(trained_on, float), np.asarray(not_trained_on, float)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need min-MSE values for both hypotheses")
    taus = np.unique(np.r_[pos, neg, -np.inf])
    tpr = np.searchsorted(np.sort(pos), taus, side="right") / pos.size
    fpr = np.searchsorted(np.sort(neg), taus, side="right") / neg.size
    return taus, tpr, fpr


def rates_at(trained_on: np.ndarray, not_trained_on: np.ndarray, tau: float) -> tuple[float, float]:
    """(TPR_τ, FPR_τ) at one threshold τ (the paper's TPR*, FPR*)."""
    return float(np.mean(np.asarray(trained_on) <= tau)), float(
        np.mean(np.asarray(not_trained_on) <= tau)
    )


def tpr_at_fpr(trained_on: np.ndarray, not_trained_on: np.ndarray, fpr: float = 0.01) -> float:
    """The largest TPR of the threshold test whose FPR does not exceed ``fpr``."""
    _, tprs, fprs = reconstruction_roc(trained_on, not_trained_on)
    return float(tprs[fprs <= fpr].max())


def mse_logit(mse: np.ndarray | Sequence[float]) -> np.ndarray:
    """The paper's transform of the min-MSE (App. A.1): φ = log((ℓ/4) / (1 − ℓ/4)), ℓ ∈ [0, 4]
    for images in [−1, 1]; φ is close to Gaussian under each hypothesis, ℓ is not."""
    q = np.clip(np.asarray(mse, dtype=float) / 4.0, 1e-12, 1 - 1e-12)
    return np.log(q / (1 - q))


def _gaussian_fit(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std() + 1e-12)


def likelihood_ratio_roc(
    trained_on: np.ndarray, not_trained_on: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(TPR, FPR) of the Neyman–Pearson test (App. A.1): N(μ₀, σ₀²) fitted to the
    trained-on values of φ = :func:`mse_logit` (min-MSE), N(μ₁, σ₁²) to the others, and
    "trained on" accepted when the likelihood ratio exceeds a threshold, swept over every
    observed value. With σ₀ ≠ σ₁ the acceptance region is an interval, not a half-line."""
    pos, neg = mse_logit(trained_on), mse_logit(not_trained_on)
    (mu0, s0), (mu1, s1) = _gaussian_fit(pos), _gaussian_fit(neg)

    def log_lr(v: np.ndarray) -> np.ndarray:
        return (
            -0.5 * ((v - mu0) / s0) ** 2 - math.log(s0) + 0.5 * ((v - mu1) / s1) ** 2 + math.log(s1)
        )

    lp, ln = np.sort(log_lr(pos)), np.sort(log_lr(neg))
    cuts = np.unique(np.r_[lp, ln, np.inf])[::-1]
    tpr = 1 - np.searchsorted(lp, cuts, side="left") / lp.size
    fpr = 1 - np.searchsorted(ln, cuts, side="left") / ln.size
    return tpr, fpr


def _tpr_on_grid(tpr: np.ndarray, fpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The best TPR with FPR ≤ each grid value (a step ROC read on a common grid)."""
    order = np.argsort(fpr, kind="stable")
    f, t = fpr[order], np.maximum.accumulate(tpr[order])
    idx = np.searchsorted(f, grid, side="right") - 1
    return np.where(idx >= 0, t[np.clip(idx, 0, None)], 0.0)


def theorem1_check(trained_on: np.ndarray, not_trained_on: np.ndarray) -> dict[str, float]:
    """The paper's Theorem 1 on these samples: if φ = :func:`mse_logit` is Gaussian under both
    hypotheses, the cumulative ROC (a threshold on the min-MSE), the Neyman–Pearson ROC and
    Eq. 6's analytic ROC coincide. The largest |ΔTPR| between each pair on a log grid of FPRs
    the sample resolves (from 10 / #negatives, at least 10⁻³, to 1)."""
    pos, neg = np.asarray(trained_on, float), np.asarray(not_trained_on, float)
    grid = np.logspace(math.log10(max(1e-3, 10 / neg.size)), 0, 61)
    _, c_tpr, c_fpr = reconstruction_roc(pos, neg)
    n_tpr, n_fpr = likelihood_ratio_roc(pos, neg)
    (mu0, s0), (mu1, s1) = _gaussian_fit(mse_logit(pos)), _gaussian_fit(mse_logit(neg))
    curves = {
        "cumulative": _tpr_on_grid(c_tpr, c_fpr, grid),
        "np": _tpr_on_grid(n_tpr, n_fpr, grid),
        "analytic": gaussian_roc_tpr(grid, mu0, s0, mu1, s1),
    }

    def gap(a: str, b: str) -> float:
        return float(np.abs(curves[a] - curves[b]).max())

    return {
        "fpr_from": float(grid[0]),
        "max_gap_cumulative_np": gap("cumulative", "np"),
        "max_gap_np_analytic": gap("np", "analytic"),
        "max_gap_cumulative_analytic": gap("cumulative", "analytic"),
    }


def gaussian_roc_tpr(
    fpr: np.ndarray | float, mu0: float, sigma0: float, mu1: float, sigma1: float
) -> np.ndarray:
    """Eq. 6: TPR = ½ − ½·erf((μ₀ − μ₁)/(√2σ₀) + (σ₁/σ₀)·erf⁻¹(1 − 2·FPR))."""
    f = np.asarray(fpr, dtype=float)
    return 0.5 - 0.5 * erf(
        (mu0 - mu1) / (math.sqrt(2) * sigma0) + sigma1 / sigma0 * erfinv(1 - 2 * f)
    )


def constant_guess_tpr(kappa: float, n: int) -> float:
    """TPR of a reconstructor that ignores θ: 1 − (1 − κ)^N (→ 1 as the training set grows)."""
    if not 0 <= kappa <= 1 or n < 1:
        raise ValueError(f"need κ in [0, 1] and N ≥ 1, got {kappa}, {n}")
    return 1 - (1 - kappa) ** n


def largest_defended_epsilon(
    epsilons: Sequence[float], tprs: Sequence[float], limit: float = 0.015
) -> dict[str, float | None]:
    """The defence criterion of Maciazek & Allison §4: TPR ≤ ``limit`` at FPR = 0.01.

    ``measured``: the largest ε of the runs meeting it below the first run that fails;
    ``interpolated``: where TPR crosses ``limit`` between those two runs, linear in log ε (the
    paper's reading of Fig. 4). None when no run meets it."""
    pairs = sorted(zip(epsilons, tprs, strict=True))
    measured = interpolated = None
    for (e0, t0), (e1, t1) in zip(pairs, [*pairs[1:], (math.inf, math.inf)], strict=True):
        if t0 > limit:
            break
        measured = interpolated = e0
        if t1 > limit and math.isfinite(e1):
            frac = (limit - t0) / (t1 - t0)
            interpolated = math.exp(math.log(e0) + frac * (math.log(e1) - math.log(e0)))
            break
    return {"limit": limit, "measured": measured, "interpolated": interpolated}
