"""Membership metrics of precomputed scores: privlab's metric functions plus intervals for
the AUC (DeLong) and the advantage (a DKW band), a compact ROC and which low-FPR TPRs the
sample can resolve at all."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from privlab.metrics.membership import membership_metrics, roc_curve

#: the FPR budgets reported (str(fpr) keys of membership_metrics)
FPRS = (0.1, 0.01, 0.001)
#: FPR grid of the stored ROC: 0, then log-spaced from 1e-5 to 1
ROC_FPR_GRID = np.concatenate([[0.0], np.logspace(-5, 0, 101)])
CONFIDENCE = 0.95


def min_nonmembers(fpr: float) -> int:
    """Non-members needed before one false positive is within the budget ``fpr``."""
    return math.ceil(1.0 / fpr - 1e-9)


def resolvable(fpr: float, n_nonmembers: int) -> bool:
    """Whether a sample with ``n_nonmembers`` can measure a TPR at FPR ``fpr``: with fewer
    than ``1 / fpr`` the only admissible threshold flags no non-member at all."""
    return n_nonmembers >= min_nonmembers(fpr)


def roc_on_grid(is_member: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """The ROC sampled on :data:`ROC_FPR_GRID`: at each grid FPR the largest TPR of a
    threshold whose FPR does not exceed it."""
    curve = roc_curve(is_member, scores)
    last = np.searchsorted(curve.fpr, ROC_FPR_GRID, side="right") - 1
    tpr = curve.tpr[np.maximum(last, 0)]
    return {"fpr": ROC_FPR_GRID.round(8).tolist(), "tpr": tpr.round(6).tolist()}


def auc_interval(members: np.ndarray, nonmembers: np.ndarray) -> list[float]:
    """DeLong's normal interval for the AUC (placement variances), clipped to [0, 1]."""
    m, n = members.size, nonmembers.size
    ranks = stats.rankdata(np.concatenate([members, nonmembers]))
    # placement of each member among non-members, and of each non-member among members
    v_member = (ranks[:m] - stats.rankdata(members)) / n
    v_non = 1.0 - (ranks[m:] - stats.rankdata(nonmembers)) / m
    auc = float(v_member.mean())
    var = (np.var(v_member, ddof=1) if m > 1 else 0.0) / m
    var += (np.var(v_non, ddof=1) if n > 1 else 0.0) / n
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    half = z * math.sqrt(max(float(var), 0.0))
    return [max(0.0, auc - half), min(1.0, auc + half)]


def advantage_interval(advantage: float, m: int, n: int) -> list[float]:
    """A distribution-free interval for the best threshold's advantage (``max TPR - FPR``,
    the one-sided two-sample KS distance): with probability ≥ 95 % both empirical CDFs lie
    within their DKW (Massart) bands, ``sqrt(ln(4 / alpha) / 2k)`` each, which moves the
    maximum by at most their sum. Conservative, and valid although the threshold was chosen
    on the same data. The population value is ≥ 0 (the threshold ``+inf``), hence the clip."""
    alpha = 1.0 - CONFIDENCE
    eps = sum(math.sqrt(math.log(4.0 / alpha) / (2.0 * k)) for k in (m, n))
    return [max(0.0, advantage - eps), min(1.0, advantage + eps)]


def low_fpr_rows(metrics: dict[str, Any], n_nonmembers: int) -> list[dict[str, Any]]:
    """Each budget's TPR with its Clopper-Pearson interval, flagged when unresolvable."""
    rows = []
    for fpr in FPRS:
        key = str(fpr)
        rows.append(
            {
                "fpr": fpr,
                "tpr": metrics["tpr_at_fpr"][key],
                "ci": metrics["tpr_at_fpr_ci"][key],
                "resolved": resolvable(fpr, n_nonmembers),
                "min_nonmembers": min_nonmembers(fpr),
            }
        )
    return rows


def evaluate(members: np.ndarray, nonmembers: np.ndarray) -> dict[str, Any]:
    """Metrics (with intervals), low-FPR rows and the compact ROC of one score sample."""
    is_member = np.r_[np.ones(members.size, dtype=bool), np.zeros(nonmembers.size, dtype=bool)]
    scores = np.r_[members, nonmembers]
    metrics = membership_metrics(is_member, scores, fprs=FPRS)
    metrics["auc_ci"] = auc_interval(members, nonmembers)
    metrics["advantage_ci"] = advantage_interval(
        metrics["advantage"], members.size, nonmembers.size
    )
    return {
        "n_members": int(members.size),
        "n_nonmembers": int(nonmembers.size),
        "metrics": metrics,
        "low_fpr": low_fpr_rows(metrics, int(nonmembers.size)),
        "roc": roc_on_grid(is_member, scores),
    }
