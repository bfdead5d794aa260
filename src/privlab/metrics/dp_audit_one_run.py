"""The one-run DP audit (Steinke, Nasr & Jagielski, NeurIPS 2023, "Privacy Auditing with One
(1) Training Run", arXiv:2305.08846): m canaries, each included independently with probability
1/2, one training run; the auditor guesses "in" for its k₊ highest-scoring canaries and "out"
for its k₋ lowest. :func:`one_run_epsilon_from_counts` turns (guesses r, correct v) into a
lower bound ε̂ on the mechanism's ε, valid with probability at least ``confidence``;
:func:`one_run_epsilon_lower_bound` counts them from scores. Unlike the many-run threshold
bound (:mod:`privlab.metrics.dp_audit`), it holds for the scores of many canaries of one model.
Where a choice has to be made the bound errs low. All functions are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from privlab.metrics.inputs import (
    BoolArray,
    FloatArray,
    as_count,
    as_membership,
    as_scores,
    check_confidence,
    check_delta,
    check_same_length,
)

__all__ = [
    "OneRunBound",
    "one_run_epsilon_from_counts",
    "one_run_epsilon_lower_bound",
    "one_run_epsilon_lower_bound_grid",
    "one_run_p_value",
]


@dataclass(frozen=True)
class OneRunBound:
    """An ε lower bound from one training run (Steinke, Nasr & Jagielski 2023).

    Attributes:
        epsilon: ε̂ ≥ 0, valid at ``confidence``.
        guesses: r = k₊ + k₋, the canaries guessed (the rest abstained on).
        correct: v, the correct guesses.
        k_pos: Highest-scoring canaries guessed "in".
        k_neg: Lowest-scoring canaries guessed "out".
        canaries: m, all randomised canaries (guessed or not).
        confidence: Confidence of ``epsilon``.
        delta: The δ of the (ε, δ)-DP hypothesis.
        tried: Guess counts (k₊, k₋) tried; each at confidence 1 − (1 − confidence)/tried.
    """

    epsilon: float
    guesses: int
    correct: int
    k_pos: int
    k_neg: int
    canaries: int
    confidence: float
    delta: float
    tried: int

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain Python values."""
        return asdict(self)


# --------------------------------------------------------------------------- one run


def _check_one_run_counts(r: int, v: int, m: int | None, delta: float) -> tuple[int, int, int]:
    r, v = as_count(r, "r"), as_count(v, "v")
    if v > r:
        raise ValueError(f"v (correct guesses) must be <= r (guesses), got v={v}, r={r}")
    if m is None:
        if delta > 0:
            raise ValueError("m (the number of randomised canaries) is needed when delta > 0")
        return r, v, r
    m = as_count(m, "m")
    if r > m:
        raise ValueError(f"r (guesses) must be <= m (canaries), got r={r}, m={m}")
    return r, v, m


def _one_run_p(r: int, v: int, eps: float, delta: float, m: int) -> float:
    """Steinke et al.'s bound on P[W ≥ v] under (ε, δ)-DP (formula at one_run_p_value)."""
    q = float(special.expit(eps))  # e^ε / (1 + e^ε), the accuracy of ε-DP randomised response
    tail = float(stats.binom.sf(v - 1, r, q))  # f(v) = P[Binomial(r, q) ≥ v]
    if delta == 0.0 or v == 0:
        return tail
    # f(v − i) − f(v) = P[v − i ≤ Binomial(r, q) ≤ v − 1], for i = 1..v (larger i only shrink)
    window = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    alpha = float(np.max(window / np.arange(1, v + 1)))
    return min(1.0, tail + 2.0 * m * delta * alpha)


def one_run_p_value(
    r: int, v: int, *, epsilon: float, delta: float = 0.0, m: int | None = None
) -> float:
    """Probability of at least ``v`` correct out of ``r`` guesses if the mechanism is (ε, δ)-DP
    (Steinke, Nasr & Jagielski 2023, the theorem for approximate DP and the p-value of their
    Appendix D):

        p = min(1, f(v) + 2·m·δ · max_{i=1..v} (f(v − i) − f(v)) / i),
        f(k) = P[Binomial(r, e^ε/(1 + e^ε)) ≥ k],

    where ``m`` counts all randomised canaries (guessed or not). For δ = 0 this is f(v): the
    correct guesses are stochastically dominated by Binomial(r, e^ε/(1 + e^ε)).

    Raises:
        ValueError: If a count is negative or not an integer, v > r, r > m, ``epsilon`` < 0,
            ``delta`` outside [0, 1), or ``m`` is missing with ``delta`` > 0.
    """
    delta = check_delta(delta)
    r, v, m_ = _check_one_run_counts(r, v, m, delta)
    if not float(epsilon) >= 0.0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    return _one_run_p(r, v, float(epsilon), delta, m_)


def _largest_rejected(p: Callable[[float], float], beta: float, hi: float, grid: int) -> float:
    """Some ε with p(ε) ≤ β in the last grid cell of [0, hi] that starts rejected, refined by
    bisection that keeps p(lo) ≤ β (so the answer is always a rejected ε, never one above).
    ``p(0) ≤ β < p(hi)`` on entry; ``grid=1`` is plain bisection (monotone p)."""
    points = np.linspace(0.0, hi, grid + 1)
    rejected = [j for j, e in enumerate(points[:-1]) if j == 0 or p(float(e)) <= beta]
    lo, up = float(points[rejected[-1]]), float(points[rejected[-1] + 1])
    while up - lo > 1e-10:
        mid = (lo + up) / 2.0
        if p(mid) <= beta:
            lo = mid
        else:
            up = mid
    return lo


def one_run_epsilon_from_counts(
    r: int, v: int, *, m: int | None = None, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """Largest ε whose (ε, δ)-DP hypothesis is rejected at level β = 1 − ``confidence`` by
    ``v`` correct out of ``r`` guesses on ``m`` canaries (Steinke, Nasr & Jagielski 2023):
    the largest ε with :func:`one_run_p_value` ≤ β, 0 if there is none. ``r`` must be fixed
    before the scores are seen.

    Validity: (ε, δ)-DP implies (ε′, δ)-DP for every ε′ ≥ ε, so under the hypothesis
    P[W ≥ v] ≤ min_{ε′ ≥ ε} p(v, ε′), and rejecting whenever some ε′ ≥ ε has p ≤ β keeps
    level β. The p-value is increasing in ε when 2mδ ≤ 1 (it is then a maximum of
    non-negative mixtures of the binomial tails f(v), f(v − i)), and the answer is found by
    bisection; for 2mδ > 1 a 64-cell grid finds the last rejected cell, which can only err low.
    The answer is a rejected ε itself (bisection keeps p(lo) ≤ β), never a hair above.

    Raises:
        ValueError: As :func:`one_run_p_value`, or ``confidence`` outside (0, 1).
    """
    beta = 1.0 - check_confidence(confidence)
    delta = check_delta(delta)
    r, v, m_ = _check_one_run_counts(r, v, m, delta)

    def p(eps: float) -> float:
        return _one_run_p(r, v, eps, delta, m_)

    if p(0.0) > beta:
        return 0.0
    hi = 1.0
    while p(hi) <= beta:  # p → 1 as ε → ∞ (q rounds to 1 by ε = 37), so this ends
        hi *= 2.0
        if hi > 1e4:  # pragma: no cover - unreachable in float64
            raise RuntimeError("one-run p-value stayed below the level as ε grew")
    return _largest_rejected(p, beta, hi, 1 if 2 * m_ * delta <= 1 else 64)


def _one_run_inputs(is_included: ArrayLike, scores: ArrayLike) -> tuple[BoolArray, FloatArray]:
    included = as_membership(is_included, "is_included")
    score = as_scores(scores, "scores")
    check_same_length(included, score, "is_included", "scores")
    return included, score


def _guess(
    included: BoolArray, score: FloatArray, k_pos: int, k_neg: int, seed: int
) -> tuple[int, int, int]:
    """(k₊, k₋, correct): "in" for the k₊ highest scores, "out" for the k₋ lowest. Ties are
    broken by a seeded random order, a rule independent of the inclusion bits even when the
    canaries are stored members first."""
    k_pos, k_neg = as_count(k_pos, "k_pos"), as_count(k_neg, "k_neg")
    if k_pos + k_neg > included.size:
        raise ValueError(
            f"k_pos + k_neg = {k_pos + k_neg} guesses, more than the {included.size} canaries"
        )
    tie_break = np.random.default_rng(seed).permutation(included.size)
    order = np.lexsort((tie_break, -score))  # by score (descending), then the random order
    right_in = int(included[order[:k_pos]].sum())
    right_out = int((~included[order[included.size - k_neg :]]).sum())
    return k_pos, k_neg, right_in + right_out


def one_run_epsilon_lower_bound(
    is_included: ArrayLike,
    scores: ArrayLike,
    *,
    k_pos: int,
    k_neg: int,
    delta: float = 0.0,
    confidence: float = 0.95,
    seed: int = 0,
) -> OneRunBound:
    """ε lower bound from one training run (Steinke, Nasr & Jagielski 2023): every canary was
    included independently with probability 1/2 (``is_included``), the attack scored each one;
    guess "in" for the ``k_pos`` highest scores and "out" for the ``k_neg`` lowest, abstain on
    the rest, and bound with :func:`one_run_epsilon_from_counts` (m = all canaries). Equal
    scores are ordered at random (``seed``).

    ``k_pos`` and ``k_neg`` must be fixed before the scores are seen: choosing them by looking
    at the results voids the confidence (:func:`one_run_epsilon_lower_bound_grid` tries a fixed
    grid with a union bound). Canaries must be randomised independently of everything else;
    a fixed member / non-member split does not qualify.

    Raises:
        ValueError: On invalid inputs (lengths, NaN, non-boolean inclusion), negative counts or
            more guesses than canaries, and as :func:`one_run_epsilon_from_counts`.
    """
    included, score = _one_run_inputs(is_included, scores)
    k_pos, k_neg, v = _guess(included, score, k_pos, k_neg, seed)
    eps = one_run_epsilon_from_counts(
        k_pos + k_neg, v, m=included.size, delta=delta, confidence=confidence
    )
    return OneRunBound(
        epsilon=eps,
        guesses=k_pos + k_neg,
        correct=v,
        k_pos=k_pos,
        k_neg=k_neg,
        canaries=included.size,
        confidence=float(confidence),
        delta=float(delta),
        tried=1,
    )


def one_run_epsilon_lower_bound_grid(
    is_included: ArrayLike,
    scores: ArrayLike,
    *,
    guess_counts: Sequence[tuple[int, int]],
    delta: float = 0.0,
    confidence: float = 0.95,
    seed: int = 0,
) -> OneRunBound:
    """The largest :func:`one_run_epsilon_lower_bound` over a grid of (k₊, k₋) fixed in
    advance, each at confidence 1 − (1 − ``confidence``)/G for the G distinct pairs (a union
    bound), so the maximum holds at ``confidence``. Keep the grid small: each pair costs
    confidence. Ties go to the first pair in grid order.

    Raises:
        ValueError: On an empty grid, and as :func:`one_run_epsilon_lower_bound`.
    """
    beta = 1.0 - check_confidence(confidence)
    pairs = list(dict.fromkeys((int(a), int(b)) for a, b in guess_counts))
    if not pairs:
        raise ValueError("guess_counts is empty; give at least one (k_pos, k_neg) pair")
    each = 1.0 - beta / len(pairs)
    results = [
        one_run_epsilon_lower_bound(
            is_included, scores, k_pos=a, k_neg=b, delta=delta, confidence=each, seed=seed
        )
        for a, b in pairs
    ]
    best = max(results, key=lambda res: res.epsilon)  # max keeps the first of equals
    return OneRunBound(
        epsilon=best.epsilon,
        guesses=best.guesses,
        correct=best.correct,
        k_pos=best.k_pos,
        k_neg=best.k_neg,
        canaries=best.canaries,
        confidence=1.0 - beta,
        delta=best.delta,
        tried=len(pairs),
    )
