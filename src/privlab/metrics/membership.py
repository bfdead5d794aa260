"""Membership-inference metrics as pure functions of ``(is_member, scores)``.

Every attack in privlab reduces to one real-valued score per example, where a
higher score means "more likely a training member".  The functions here turn
those scores into the numbers reported by Song, Shokri & Mittal, *Privacy Risks
of Securing Machine Learning Models against Adversarial Examples* (CCS 2019):

* Eq. (15), the membership inference accuracy ``A_inf`` -- a *balanced*
  accuracy: members and non-members each carry weight 1/2 regardless of how
  many of each there are,

  ``A_inf = sum_{z in D_train} I(z) / (2 |D_train|)
  + sum_{z in D_test} (1 - I(z)) / (2 |D_test|)``;

* Eq. (16), the membership inference advantage ``ADVT_inf = 2 (A_inf - 0.5)``
  (Yeom et al.), i.e. ``TPR - FPR`` of the decision rule;

* Eq. (17), the confidence-thresholding rule ``I(z) = 1{score(z) >= tau}``,
  whose accuracy is ``1/2 + 1/2 (CCDF_train(tau) - CCDF_test(tau))``.  The
  paper reports the *worst case* by choosing ``tau`` to maximise Eq. (17) on
  the evaluation data (:func:`best_threshold`); an honest attacker instead fits
  ``tau`` on shadow data and applies it (:func:`accuracy_at_threshold`).

In addition the module provides threshold-free and low-FPR summaries that are
standard in the later literature: the ROC curve, its area (AUC), and the TPR at
a fixed FPR budget with an exact Clopper-Pearson confidence interval.

Conventions: ``is_member`` is 1-D boolean-like (True/1 = member of ``D_train``), with both
classes present; ``scores`` is 1-D, finite, compared in float64; the decision rule is always
``scores >= threshold``, where ``+inf`` predicts nobody and ``-inf`` everybody a member.
Validation lives in :mod:`privlab.metrics.inputs`.

All functions are pure: they never modify their inputs and hold no state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "RocCurve",
    "ThresholdResult",
    "TprAtFpr",
    "accuracy_at_threshold",
    "accuracy_interval",
    "advantage",
    "auc",
    "best_threshold",
    "clopper_pearson",
    "inference_accuracy",
    "membership_metrics",
    "null_accuracy",
    "roc_curve",
    "tpr_at_fpr",
]  # fmt: skip

from privlab.metrics.inputs import (
    BoolArray,
    FloatArray,
    IntArray,
    as_membership,
    check_both_classes,
    check_same_length,
    check_threshold,
    validate,
)

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RocCurve:
    """ROC curve of the rule ``scores >= threshold``.

    ``thresholds`` is strictly decreasing: ``+inf`` first (nobody predicted a
    member, the point (0, 0)), then every distinct score from highest to lowest
    (the last one predicts everybody, the point (1, 1)).  ``fpr[i]``/``tpr[i]``
    are the false/true positive rates of ``scores >= thresholds[i]``.  Examples
    with equal scores always enter the curve together, so ties produce a single
    diagonal step rather than an order-dependent staircase.
    """

    fpr: FloatArray
    tpr: FloatArray
    thresholds: FloatArray


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold together with its Eq. (15) accuracy and Eq. (16) advantage."""

    threshold: float
    accuracy: float
    advantage: float


@dataclass(frozen=True)
class TprAtFpr:
    """True positive rate achievable within a false-positive-rate budget.

    Attributes:
        fpr_target: The FPR budget that was asked for.
        tpr: Largest TPR over ROC thresholds whose FPR is ``<= fpr_target``.
        fpr_achieved: The FPR actually incurred at ``threshold``
            (``<= fpr_target``).
        threshold: The highest threshold (rule ``scores >= threshold``)
            achieving ``tpr``, i.e. the one with the fewest false positives;
            one of :attr:`RocCurve.thresholds`, possibly ``+inf``.
        tp: Number of members flagged at ``threshold``.
        positives: Number of members (``tpr == tp / positives``).
        ci_low: Lower end of the two-sided 95 % Clopper-Pearson interval on TPR.
        ci_high: Upper end of that interval.
    """

    fpr_target: float
    tpr: float
    fpr_achieved: float
    threshold: float
    tp: int
    positives: int
    ci_low: float
    ci_high: float


# --------------------------------------------------------------------------- core counts


def _accuracy_from_counts(tp: int, fp: int, n_pos: int, n_neg: int) -> float:
    """Eq. (15) from confusion counts: ``tp / (2 |D_train|) + tn / (2 |D_test|)``.

    Every accuracy in this module goes through this one expression so that
    values computed along different paths are bit-for-bit identical.
    """
    tn = n_neg - fp
    return float(tp / (2 * n_pos) + tn / (2 * n_neg))


def _roc_counts(member: BoolArray, score: FloatArray) -> tuple[FloatArray, IntArray, IntArray]:
    """Distinct scores (descending) and cumulative TP/FP counts, ``+inf`` row first.

    Row ``i`` gives the confusion counts of ``score >= thresholds[i]``.
    """
    order = np.argsort(-score, kind="stable")
    s = score[order]
    m = member[order]
    # last index of each run of equal scores: ties enter the curve together
    ends = np.flatnonzero(s[1:] != s[:-1])
    ends = np.append(ends, s.size - 1)
    tp_cum = np.cumsum(m, dtype=np.int64)[ends]
    fp_cum = (ends + 1).astype(np.int64) - tp_cum
    thresholds = np.concatenate(([np.inf], s[ends]))
    tps = np.concatenate((np.zeros(1, dtype=np.int64), tp_cum))
    fps = np.concatenate((np.zeros(1, dtype=np.int64), fp_cum))
    return thresholds, tps, fps


# --------------------------------------------------------------------------- public API


def roc_curve(is_member: ArrayLike, scores: ArrayLike) -> RocCurve:
    """ROC curve of the thresholding rule of Eq. (17), ``I(z) = 1{score(z) >= tau}``.

    Unlike ``sklearn.metrics.roc_curve`` no collinear points are dropped: there
    is one point per distinct score plus the ``+inf`` point (0, 0).  The curve
    equals sklearn's with ``drop_intermediate=False``.

    Args:
        is_member: Boolean-like membership labels (1 = member of ``D_train``).
        scores: Attack scores, higher = more likely a member.

    Returns:
        A :class:`RocCurve` whose first point is (0, 0) at threshold ``+inf`` and
        whose last point is (1, 1) at the smallest score.

    Raises:
        ValueError: On empty or mismatched inputs, a single class, non-finite
            scores or labels that are not boolean-like.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    thresholds, tps, fps = _roc_counts(member, score)
    return RocCurve(fpr=fps / n_neg, tpr=tps / n_pos, thresholds=thresholds)


def auc(is_member: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve.

    Computed as the normalised Mann-Whitney U statistic,
    ``P(score_member > score_nonmember) + 1/2 P(score_member == score_nonmember)``,
    via average ranks, which equals the trapezoidal area under
    :func:`roc_curve`.  Perfect separation gives 1, reversed separation 0 and
    constant scores 0.5.

    Raises:
        ValueError: As :func:`roc_curve`.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    ranks = stats.rankdata(score, method="average")
    u = float(ranks[member].sum()) - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def inference_accuracy(is_member: ArrayLike, predicted_member: ArrayLike) -> float:
    """Membership inference accuracy ``A_inf`` of hard predictions, Eq. (15).

    ``A_inf = sum_{members} I / (2 |D_train|) + sum_{non-members} (1 - I) / (2 |D_test|)``,

    i.e. the balanced accuracy: the probability of a correct guess when the
    queried example is a member or a non-member with probability 1/2 each.
    Random guessing scores 0.5 whatever the class sizes.

    Args:
        is_member: Boolean-like true membership (1 = ``D_train``).
        predicted_member: Boolean-like attack decisions ``I(z)``.

    Raises:
        ValueError: On empty or mismatched inputs, a single class in
            ``is_member`` or labels that are not boolean-like.
    """
    member = as_membership(is_member, "is_member")
    pred = as_membership(predicted_member, "predicted_member")
    check_same_length(member, pred, "is_member", "predicted_member")
    n_pos, n_neg = check_both_classes(member)
    tp = int(np.count_nonzero(pred & member))
    fp = int(np.count_nonzero(pred & ~member))
    return _accuracy_from_counts(tp, fp, n_pos, n_neg)


def advantage(accuracy: float) -> float:
    """Membership inference advantage, Eq. (16): ``ADVT_inf = 2 (A_inf - 0.5)``.

    For a thresholding rule this equals ``TPR - FPR``; 0 is random guessing,
    1 perfect inference, and negative values mean the rule is inverted.

    Raises:
        ValueError: If ``accuracy`` is NaN or outside ``[0, 1]``.
    """
    a = float(accuracy)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    return 2.0 * (a - 0.5)


def accuracy_at_threshold(is_member: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """``A_inf`` (Eq. 15) of the fixed rule ``scores >= threshold`` (Eq. 17).

    This is the honest evaluation: ``threshold`` is chosen without looking at
    the evaluation labels (e.g. :func:`best_threshold` on the attacker's shadow
    data) and then applied here to the target model's members/non-members.

    Raises:
        ValueError: As :func:`roc_curve`, or if ``threshold`` is NaN.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    t = check_threshold(threshold)
    pred = score >= t
    tp = int(np.count_nonzero(pred & member))
    fp = int(np.count_nonzero(pred & ~member))
    return _accuracy_from_counts(tp, fp, n_pos, n_neg)


def _between(hi: float, lo: float) -> float:
    """A threshold ``t`` with ``lo < t <= hi`` (the midpoint when representable)."""
    mid = hi / 2.0 + lo / 2.0  # no overflow for large magnitudes
    return mid if lo < mid <= hi else hi


def best_threshold(is_member: ArrayLike, scores: ArrayLike) -> ThresholdResult:
    """Oracle threshold maximising ``A_inf`` on the given data (Eqs. 15-17).

    This is the paper's worst-case evaluation: ``tau`` maximises
    ``1/2 + 1/2 (CCDF_train(tau) - CCDF_test(tau))`` over every distinct split
    of the sorted scores, including "nobody" (``+inf``) and "everybody"
    (``-inf``), so the accuracy is never below 0.5.

    The returned threshold lies at the midpoint between the lowest score
    flagged as member and the highest score that is not (or is ``+/-inf`` at
    the ends), so it transfers sensibly to other data; on *this* data
    ``accuracy_at_threshold(is_member, scores, result.threshold)`` reproduces
    ``result.accuracy`` exactly.  Among equally good splits the one with the
    highest threshold (fewest predicted members) is returned.

    Raises:
        ValueError: As :func:`roc_curve`.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    distinct, tps, fps = _roc_counts(member, score)
    # Same expression as _accuracy_from_counts, vectorised; only used for argmax.
    accs = tps / (2 * n_pos) + (n_neg - fps) / (2 * n_neg)
    best = int(np.argmax(accs))
    n_points = distinct.size  # = number of distinct scores + 1
    if best == 0:
        threshold = math.inf
    elif best == n_points - 1:
        threshold = -math.inf
    else:
        threshold = _between(float(distinct[best]), float(distinct[best + 1]))
    acc = _accuracy_from_counts(int(tps[best]), int(fps[best]), n_pos, n_neg)
    return ThresholdResult(threshold=threshold, accuracy=acc, advantage=advantage(acc))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper-Pearson interval for a binomial proportion ``k / n``.

    ``low = Beta^{-1}(alpha/2; k, n - k + 1)`` (0 when ``k == 0``) and
    ``high = Beta^{-1}(1 - alpha/2; k + 1, n - k)`` (1 when ``k == n``), with
    ``alpha = 1 - confidence``.

    Raises:
        ValueError: If ``n < 1``, ``k`` is not in ``[0, n]`` or ``confidence``
            is not in ``(0, 1)``.
    """
    if int(n) != n or int(k) != k:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n={n}], got {k}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2.0, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return low, high


def tpr_at_fpr(is_member: ArrayLike, scores: ArrayLike, fpr: float) -> TprAtFpr:
    """Largest TPR of the rule ``scores >= threshold`` subject to ``FPR <= fpr``.

    Only thresholds on the ROC curve are considered (no randomised
    interpolation between points), so ``fpr_achieved <= fpr`` always holds;
    with ties a budget may be unreachable except at ``+inf`` (TPR 0).  The
    interval is a two-sided 95 % Clopper-Pearson interval on ``tp / positives``.

    Raises:
        ValueError: As :func:`roc_curve`, or if ``fpr`` is not in ``[0, 1]``.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    target = float(fpr)
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr!r}")
    thresholds, tps, fps = _roc_counts(member, score)
    # Both counts are non-decreasing along the curve, so the best admissible
    # point is the last one within budget.  ``fps / n_neg`` is the correctly
    # rounded FPR, so a budget such as 0.29 admits exactly 29 of 100 negatives
    # (``0.29 * 100`` would round below 29).
    # Among the points reaching that TPR, report the one with the fewest false
    # positives (highest threshold).
    last = int(np.flatnonzero(fps / n_neg <= target)[-1])  # row 0 always admissible
    i = int(np.searchsorted(tps, tps[last], side="left"))
    tp = int(tps[i])
    low, high = clopper_pearson(tp, n_pos)
    return TprAtFpr(
        fpr_target=target,
        tpr=tp / n_pos,
        fpr_achieved=int(fps[i]) / n_neg,
        threshold=float(thresholds[i]),
        tp=tp,
        positives=n_pos,
        ci_low=low,
        ci_high=high,
    )


NULL_PERMUTATIONS = 200


def accuracy_interval(
    is_member: ArrayLike, scores: ArrayLike, threshold: float, confidence: float = 0.95
) -> tuple[float, float]:
    """A conservative interval for the Eq. (15) accuracy at ``threshold``: Clopper–Pearson
    bounds on its TPR and its TNR, each at confidence 1 − (1 − ``confidence``)/2 (Bonferroni),
    averaged. It covers the sampling error at that threshold, not the optimism of choosing it
    on the same data: :func:`null_accuracy` measures that."""
    member, score, n_pos, n_neg = validate(is_member, scores)
    each = 1 - (1 - confidence) / 2
    tp = int((score[member] >= threshold).sum())
    tn = int((score[~member] < threshold).sum())
    tpr, tnr = clopper_pearson(tp, n_pos, each), clopper_pearson(tn, n_neg, each)
    return (tpr[0] + tnr[0]) / 2, (tpr[1] + tnr[1]) / 2


def null_accuracy(
    is_member: ArrayLike, scores: ArrayLike, permutations: int = NULL_PERMUTATIONS, seed: int = 0
) -> dict[str, float]:
    """The worst-case (oracle-threshold) accuracy these scores give when they carry no signal:
    the membership labels permuted over the same scores, ``permutations`` times (seeded). On
    small evaluation sets the oracle threshold alone lifts the accuracy above 0.5 (about 0.518
    for 599 vs 599, Song et al.'s digits); an A_inf within the null's 95th percentile is not
    evidence of leakage."""
    member, score, n_pos, n_neg = validate(is_member, scores)
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # ties enter together
    rng = np.random.default_rng(seed)
    labels = np.stack([rng.permutation(member) for _ in range(permutations)])
    tps = np.cumsum(labels, axis=1, dtype=np.int64)[:, ends]
    fps = (ends + 1)[None, :] - tps
    acc = tps / (2 * n_pos) + (n_neg - fps) / (2 * n_neg)
    best = np.maximum(acc.max(axis=1), 0.5)  # the +inf threshold (nobody a member) gives 0.5
    return {
        "mean": float(best.mean()),
        "p95": float(np.quantile(best, 0.95)),
        "permutations": permutations,
    }


def membership_metrics(
    is_member: ArrayLike,
    scores: ArrayLike,
    fprs: Sequence[float] = (0.1, 0.01, 0.001),
) -> dict[str, Any]:
    """All membership metrics of one score vector as plain Python types.

    Returns:
        ``{"accuracy", "advantage", "threshold"}`` from :func:`best_threshold`
        (Eqs. 15-17, oracle threshold; ``threshold`` may be ``+/-inf``), ``"accuracy_ci"``
        (:func:`accuracy_interval`) and ``"accuracy_null"`` (:func:`null_accuracy`: the level
        the oracle threshold reaches on scores without signal),
        ``"auc"``, ``"tpr_at_fpr"`` mapping ``str(fpr)`` (e.g. ``"0.01"``) to
        the TPR, ``"tpr_at_fpr_ci"`` mapping the same keys to ``[low, high]``
        Clopper-Pearson bounds, and ``"n_members"``/``"n_nonmembers"``.

    Raises:
        ValueError: As :func:`roc_curve`, or for an FPR outside ``[0, 1]``.
    """
    member, score, n_pos, n_neg = validate(is_member, scores)
    best = best_threshold(member, score)
    tprs: dict[str, float] = {}
    cis: dict[str, list[float]] = {}
    for f in fprs:
        r = tpr_at_fpr(member, score, f)
        tprs[str(f)] = float(r.tpr)
        cis[str(f)] = [float(r.ci_low), float(r.ci_high)]
    return {
        "accuracy": float(best.accuracy),
        "accuracy_ci": list(accuracy_interval(member, score, best.threshold)),
        "accuracy_null": null_accuracy(member, score),
        "advantage": float(best.advantage),
        "threshold": float(best.threshold),
        "auc": auc(member, score),
        "tpr_at_fpr": tprs,
        "tpr_at_fpr_ci": cis,
        "n_members": n_pos,
        "n_nonmembers": n_neg,
    }
