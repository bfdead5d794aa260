"""Empirical lower bounds on a mechanism's differential-privacy ε from attack results (DP auditing).

A DP guarantee is an *upper* bound on how well any attack can tell whether a record was in the
training data; an attack that does better than the bound allows proves that the guarantee is
false. Every function here turns attack results into a lower bound ``ε̂`` that holds with
probability at least ``confidence``: if the mechanism really is (ε, δ)-DP, then ``ε̂ ≤ ε``
except with probability at most ``1 − confidence``. Where a choice has to be made the bound errs
low: a bound that is too high would call a correct DP implementation broken.

Two auditing designs, with different assumptions:

* **Many runs** (Jagielski, Ullman & Oprea 2020; Nasr et al. 2021): each (inclusion, score)
  pair comes from its own, independent training run on neighbouring datasets that differ only in
  the canary (in: D ∪ {z}, out: D). :func:`epsilon_lower_bound` bounds the false-positive and
  false-negative rates of a threshold rule with Clopper–Pearson and inverts the DP hypothesis-test
  inequalities; :func:`many_run_epsilon_lower_bound` is the same bound under the name of the
  design. Scores of *different examples of one trained model* are not independent trials of this
  game (and a fixed member / non-member split is not a pair of neighbouring datasets), so on such
  data the number is a heuristic, not a certified bound: use the one-run audit there.
* **One run** (Steinke, Nasr & Jagielski 2023): m canaries of one training run, each
  included with probability 1/2; in :mod:`privlab.metrics.dp_audit_one_run`.

Conventions follow :mod:`privlab.metrics.membership`: the rule is ``score >= threshold``
(higher = more likely in), ``+inf`` predicts nobody and ``-inf`` everybody a member. All
functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from privlab.metrics.inputs import (
    BoolArray,
    FloatArray,
    IntArray,
    check_confidence,
    check_delta,
    validate,
)

__all__ = ["EpsilonLowerBound", "epsilon_lower_bound", "many_run_epsilon_lower_bound"]

ThresholdMethod = Literal["split", "union", "fixed"]
_METHODS = ("split", "union", "fixed")


@dataclass(frozen=True)
class EpsilonLowerBound:
    """An ε lower bound from a threshold rule ``score >= threshold`` (many-run design).

    Attributes:
        epsilon: ε̂ ≥ 0, valid at ``confidence`` (0 when the attack proves nothing).
        threshold: The rule's threshold (``+/-inf`` for nobody / everybody).
        false_positives: Non-members at or above the threshold, among the examples bounded on.
        negatives: Non-members bounded on (for ``split``: the bounding part only).
        false_negatives: Members below the threshold, among the examples bounded on.
        positives: Members bounded on.
        fpr_upper: Clopper–Pearson upper bound on the false-positive rate.
        fnr_upper: Clopper–Pearson upper bound on the false-negative rate.
        fpr_confidence: One-sided confidence of ``fpr_upper``.
        fnr_confidence: One-sided confidence of ``fnr_upper``.
        confidence: Confidence of ``epsilon`` (all rates and thresholds together).
        delta: The δ of the (ε, δ)-DP hypothesis.
        method: ``"split"``, ``"union"`` or ``"fixed"`` (see :func:`epsilon_lower_bound`).
        selected_on: Examples used to choose the threshold (``split``; 0 otherwise).
    """

    epsilon: float
    threshold: float
    false_positives: int
    negatives: int
    false_negatives: int
    positives: int
    fpr_upper: float
    fnr_upper: float
    fpr_confidence: float
    fnr_confidence: float
    confidence: float
    delta: float
    method: str
    selected_on: int

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (an infinite ``threshold``, nobody or everybody
        called a member, is None: JSON has no infinity)."""
        data = asdict(self)
        data["threshold"] = self.threshold if math.isfinite(self.threshold) else None
        return data


# --------------------------------------------------------------------------- threshold bound


def _cp_upper(k: IntArray, n: int, alpha: float) -> FloatArray:
    """One-sided Clopper–Pearson upper bound on a rate at confidence ``1 − alpha``:
    ``Beta⁻¹(1 − alpha; k + 1, n − k)``, and 1 at ``k == n``. (``isf`` keeps the precision
    that ``ppf(1 − alpha)`` loses for tiny ``alpha``.)"""
    k = np.asarray(k, dtype=np.int64)
    out = np.ones(k.shape, dtype=np.float64)
    below = k < n
    out[below] = stats.beta.isf(alpha, k[below] + 1, n - k[below])
    return out


def _epsilon_from_rates(fpr_up: FloatArray, fnr_up: FloatArray, delta: float) -> FloatArray:
    """max(log((1 − δ − FPR̄)/FNR̄), log((1 − δ − FNR̄)/FPR̄), 0), elementwise."""
    if np.any(fpr_up <= 0.0) or np.any(fnr_up <= 0.0):
        # Clopper–Pearson never gives 0 at finite n; only underflow could, and a zero
        # denominator would claim ε = ∞.
        raise ValueError(
            "a Clopper–Pearson upper bound underflowed to 0; lower the confidence or use "
            "fewer examples per bound"
        )
    with np.errstate(divide="ignore"):
        a = np.log(np.maximum(1.0 - delta - fpr_up, 0.0)) - np.log(fnr_up)
        b = np.log(np.maximum(1.0 - delta - fnr_up, 0.0)) - np.log(fpr_up)
    return np.maximum(np.maximum(a, b), 0.0)


def _candidate_thresholds(score: FloatArray) -> FloatArray:
    """``+inf``, a threshold between each pair of adjacent distinct scores, ``-inf``: one
    threshold per distinct split of the sorted scores (ties stay together)."""
    d = np.unique(score)[::-1]
    hi, lo = d[:-1], d[1:]
    mid = hi / 2.0 + lo / 2.0
    between = np.where((lo < mid) & (mid <= hi), mid, hi)
    return np.concatenate(([np.inf], between, [-np.inf]))


def _error_counts(
    member: BoolArray, score: FloatArray, thresholds: FloatArray
) -> tuple[IntArray, IntArray]:
    """False positives (non-members with ``score >= t``) and false negatives (members with
    ``score < t``) at every threshold ``t``."""
    neg = np.sort(score[~member])
    pos = np.sort(score[member])
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    fn = np.searchsorted(pos, thresholds, side="left")
    return fp.astype(np.int64), fn.astype(np.int64)


def _bounds_at(
    member: BoolArray,
    score: FloatArray,
    thresholds: FloatArray,
    alphas: tuple[float, float],
    delta: float,
) -> tuple[FloatArray, IntArray, IntArray, FloatArray, FloatArray]:
    """ε̂ at every threshold, with per-rate levels ``alphas = (α_FP, α_FN)``."""
    n_pos = int(member.sum())
    fp, fn = _error_counts(member, score, thresholds)
    fpr_up = _cp_upper(fp, member.size - n_pos, alphas[0])
    fnr_up = _cp_upper(fn, n_pos, alphas[1])
    return _epsilon_from_rates(fpr_up, fnr_up, delta), fp, fn, fpr_up, fnr_up


def _split_mask(member: BoolArray, fraction: float, seed: int) -> BoolArray:
    """Seeded, stratified: ``fraction`` of the members and of the non-members (at least one,
    at most all but one of each) choose the threshold; the split never looks at the scores."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"select_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    select = np.zeros(member.size, dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(member == cls)
        if idx.size < 2:
            raise ValueError(
                "method='split' needs at least 2 members and 2 non-members (one of each to "
                f"choose the threshold, one to bound on), got {idx.size} "
                f"{'members' if cls else 'non-members'}; use method='union'"
            )
        k = min(max(round(fraction * idx.size), 1), idx.size - 1)
        select[rng.permutation(idx)[:k]] = True
    return select


def _choose(
    member: BoolArray,
    score: FloatArray,
    method: str,
    threshold: float | None,
    beta: float,
    delta: float,
    split: tuple[float, int],
) -> tuple[FloatArray, BoolArray, tuple[float, float], int]:
    """The thresholds to bound at, the examples to bound on, the per-rate levels and the number
    of examples the threshold was chosen on."""
    n_pos = int(member.sum())
    n_neg = member.size - n_pos
    everyone = np.ones(member.size, dtype=bool)
    if method == "fixed":
        if threshold is None or math.isnan(float(threshold)):
            raise ValueError("method='fixed' needs threshold=, chosen before seeing these scores")
        return np.array([float(threshold)]), everyone, (beta / 2, beta / 2), 0
    if threshold is not None:
        raise ValueError(f"threshold= is only for method='fixed', not method={method!r}")
    if method == "union":
        # Simultaneous over every threshold: union over the n_neg (n_pos) false-positive
        # (false-negative) counts a failure can occur at; see epsilon_lower_bound.
        return _candidate_thresholds(score), everyone, (beta / (2 * n_neg), beta / (2 * n_pos)), 0
    select = _split_mask(member, *split)
    alphas = (beta / 2, beta / 2)
    candidates = _candidate_thresholds(score[select])
    eps = _bounds_at(member[select], score[select], candidates, alphas, delta)[0]
    return candidates[[int(np.argmax(eps))]], ~select, alphas, int(select.sum())


def _best_bound(
    member: BoolArray,
    score: FloatArray,
    thresholds: FloatArray,
    alphas: tuple[float, float],
    delta: float,
    confidence: float,
    method: str,
    selected: int,
) -> EpsilonLowerBound:
    """The largest bound over ``thresholds`` on these examples, at levels ``alphas``."""
    eps, fp, fn, fpr_up, fnr_up = _bounds_at(member, score, thresholds, alphas, delta)
    i = int(np.argmax(eps))  # ties: the highest threshold
    n_pos = int(member.sum())
    return EpsilonLowerBound(
        epsilon=float(eps[i]),
        threshold=float(thresholds[i]),
        false_positives=int(fp[i]),
        negatives=member.size - n_pos,
        false_negatives=int(fn[i]),
        positives=n_pos,
        fpr_upper=float(fpr_up[i]),
        fnr_upper=float(fnr_up[i]),
        fpr_confidence=1.0 - alphas[0],
        fnr_confidence=1.0 - alphas[1],
        confidence=confidence,
        delta=delta,
        method=method,
        selected_on=selected,
    )


def epsilon_lower_bound(
    is_member: ArrayLike,
    scores: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    method: ThresholdMethod = "split",
    threshold: float | None = None,
    select_fraction: float = 0.5,
    seed: int = 0,
) -> EpsilonLowerBound:
    """ε lower bound from the threshold rule ``score >= t`` (Jagielski et al. 2020; Nasr et al.
    2021), valid at ``confidence`` when each (is_member, score) pair is an independent trial of
    the DP game (its own training run; see the module docstring).

    Any (ε, δ)-DP mechanism has FPR + e^ε·FNR ≥ 1 − δ and FNR + e^ε·FPR ≥ 1 − δ for every rule,
    so with one-sided Clopper–Pearson upper bounds FPR̄ ≥ FPR and FNR̄ ≥ FNR,
    ε ≥ max(log((1 − δ − FPR̄)/FNR̄), log((1 − δ − FNR̄)/FPR̄)), taken as 0 where negative or
    undefined. Each of the two rates gets half the error budget β = 1 − confidence.
    Maximising over thresholds on the same data would break the confidence, so ``method``:

    * ``"split"`` (default): a seeded, stratified random ``select_fraction`` of the members and
      of the non-members chooses the threshold (the largest bound there); the bound is computed
      at that one threshold on the other examples only, each rate at confidence 1 − β/2.
    * ``"union"``: all examples, every threshold (the maximum is returned). A rate bound can only
      fail at one of the n_neg (n_pos) counts of false positives (negatives) below all, and for
      each count the failure event is that of one fixed threshold, so FPR bounds at confidence
      1 − β/(2·n_neg) and FNR bounds at 1 − β/(2·n_pos) hold at every threshold at once —
      a union bound that stays valid although the thresholds are data-dependent.
    * ``"fixed"``: one ``threshold`` chosen before seeing these scores (e.g. on shadow data),
      each rate at confidence 1 − β/2.

    A perfect attack gives a finite bound that grows with the number of examples (FNR̄ > 0).

    Raises:
        ValueError: On invalid labels or scores (as :func:`privlab.metrics.membership.roc_curve`),
            ``confidence`` outside (0, 1), ``delta`` outside [0, 1), an unknown ``method``, a
            missing or misplaced ``threshold``, or fewer than 2 members or non-members for
            ``"split"``.
    """
    member, score, _, _ = validate(is_member, scores)
    beta = 1.0 - check_confidence(confidence)
    delta = check_delta(delta)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    thresholds, used, alphas, selected = _choose(
        member, score, method, threshold, beta, delta, (select_fraction, seed)
    )
    return _best_bound(
        member[used], score[used], thresholds, alphas, delta, 1.0 - beta, method, selected
    )


def many_run_epsilon_lower_bound(
    is_included: ArrayLike, scores: ArrayLike, **options: Any
) -> EpsilonLowerBound:
    """ε lower bound from many independent training runs: in run j the canary was included
    (``is_included[j]``) or not, and the attack scored it ``scores[j]``. The runs are the
    independent trials that :func:`epsilon_lower_bound` assumes; this is that bound, with the
    same keyword arguments (``delta``, ``confidence``, ``method``, …)."""
    return epsilon_lower_bound(is_included, scores, **options)
