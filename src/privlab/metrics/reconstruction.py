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


def nn_mse_threshold(train: torch.Tensor, validation: torch.Tensor) -> float:
    """τ: the mean over validation images of the MSE to their nearest training image."""
    if len(train) == 0 or len(validation) == 0:
        raise ValueError("need training and validation images to set τ")
    return float(pairwise_mse(validation, train).min(1).values.mean())


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


def likelihood_ratio_roc(
    trained_on: np.ndarray, not_trained_on: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(TPR, FPR) of the Neyman–Pearson test on the min-MSE (App. A.1): fit N(μ₀, σ₀²) to the
    trained-on values and N(μ₁, σ₁²) to the others, and reject "not trained on" when the
    likelihood ratio exceeds a threshold, swept over every observed value. With σ₀ ≠ σ₁ the
    acceptance region is an interval, not a half-line, so this ROC dominates the threshold one."""
    pos, neg = np.asarray(trained_on, float), np.asarray(not_trained_on, float)
    mu0, s0, mu1, s1 = pos.mean(), pos.std() + 1e-12, neg.mean(), neg.std() + 1e-12

    def log_lr(v: np.ndarray) -> np.ndarray:
        return (
            -0.5 * ((v - mu0) / s0) ** 2 - math.log(s0) + 0.5 * ((v - mu1) / s1) ** 2 + math.log(s1)
        )

    lp, ln = log_lr(pos), log_lr(neg)
    cuts = np.unique(np.r_[lp, ln, np.inf])[::-1]
    tpr = np.array([np.mean(lp >= c) for c in cuts])
    fpr = np.array([np.mean(ln >= c) for c in cuts])
    return tpr, fpr


def gaussian_roc_tpr(fpr: np.ndarray | float, mu0: float, sigma0: float, mu1: float, sigma1: float):
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
