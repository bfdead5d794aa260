"""DP auditing bounds (privlab.metrics.dp_audit) against independent computations: simulated
mechanisms of known ε, Clopper–Pearson bounds and binomial tails from scipy directly, brute-force
searches over ε."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq

from privlab.metrics import (
    EpsilonLowerBound,
    clopper_pearson,
    epsilon_lower_bound,
    many_run_epsilon_lower_bound,
    one_run_epsilon_from_counts,
    one_run_epsilon_lower_bound,
    one_run_epsilon_lower_bound_grid,
    one_run_p_value,
)


def randomized_response(n: int, eps: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """n independent trials of an exactly ε-DP mechanism: the inclusion bit (probability 1/2),
    reported flipped with probability 1/(1 + e^ε)."""
    included = rng.random(n) < 0.5
    flipped = rng.random(n) < 1.0 / (1.0 + math.exp(eps))
    return included, (included ^ flipped).astype(float)


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The exact ε(δ) of one draw of N(μ, 1) vs N(0, 1) (the Gaussian mechanism's privacy
    profile, Balle & Wang 2018): δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)."""

    def gap(eps: float) -> float:
        return (
            stats.norm.cdf(-eps / mu + mu / 2)
            - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
            - delta
        )

    return brentq(gap, 0.0, 50.0, xtol=1e-12)


def hand_bound(
    fp: int, n_neg: int, fn: int, n_pos: int, a_fp: float, a_fn: float, delta: float
) -> float:
    """The closed form with one-sided Clopper–Pearson upper bounds straight from scipy's Beta."""
    fpr = 1.0 if fp == n_neg else stats.beta.ppf(1 - a_fp, fp + 1, n_neg - fp)
    fnr = 1.0 if fn == n_pos else stats.beta.ppf(1 - a_fn, fn + 1, n_pos - fn)
    terms = [(1 - delta - fpr) / fnr, (1 - delta - fnr) / fpr]
    return max([0.0] + [math.log(t) for t in terms if t > 0])


def binary_counts(fp: int, n_neg: int, fn: int, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores 0/1 with exactly fp non-members at 1 and fn members at 0."""
    member = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    scores = np.r_[np.ones(n_pos - fn), np.zeros(fn), np.ones(fp), np.zeros(n_neg - fp)]
    return member, scores


# --------------------------------------------------------------------------- (b) closed form


@pytest.mark.parametrize("delta", [0.0, 1e-3, 0.05])
def test_union_bound_equals_the_closed_form_on_hand_counts(delta):
    member, scores = binary_counts(fp=3, n_neg=50, fn=5, n_pos=40)
    res = epsilon_lower_bound(member, scores, delta=delta, method="union")
    beta = 0.05
    # every threshold at once: each FP count gets β/(2·n_neg), each FN count β/(2·n_pos)
    expected = hand_bound(3, 50, 5, 40, beta / 100, beta / 80, delta)
    assert res.epsilon == pytest.approx(expected, rel=1e-9)
    assert expected > 0.5
    assert (res.false_positives, res.negatives, res.false_negatives, res.positives) == (
        3,
        50,
        5,
        40,
    )
    assert 0 < res.threshold <= 1  # between the 0s and the 1s
    assert res.fpr_confidence == pytest.approx(1 - beta / 100)
    assert res.fnr_confidence == pytest.approx(1 - beta / 80)
    assert (res.confidence, res.delta, res.method, res.selected_on) == (0.95, delta, "union", 0)
    assert json.loads(json.dumps(res.as_dict())) == res.as_dict()  # plain Python values


def test_fixed_threshold_gives_each_rate_half_the_error_budget():
    member, scores = binary_counts(fp=7, n_neg=60, fn=4, n_pos=30)
    res = epsilon_lower_bound(
        member, scores, delta=1e-5, confidence=0.9, method="fixed", threshold=0.5
    )
    assert res.epsilon == pytest.approx(hand_bound(7, 60, 4, 30, 0.05, 0.05, 1e-5), rel=1e-9)
    # membership.clopper_pearson's two-sided upper end at 0.9 is the one-sided bound at 0.95
    assert res.fpr_upper == pytest.approx(clopper_pearson(7, 60, 0.9)[1], rel=1e-9)
    assert res.fnr_upper == pytest.approx(clopper_pearson(4, 30, 0.9)[1], rel=1e-9)
    assert (res.threshold, res.method) == (0.5, "fixed")


def test_split_chooses_on_one_part_and_bounds_on_the_other():
    rng = np.random.default_rng(3)
    member = rng.random(400) < 0.5
    scores = rng.normal(size=400) + 2.0 * member
    res = epsilon_lower_bound(member, scores, delta=1e-4, seed=7)
    assert res.method == "split" and res.selected_on == 200
    assert res.selected_on + res.negatives + res.positives == 400
    expected = hand_bound(
        res.false_positives, res.negatives, res.false_negatives, res.positives, 0.025, 0.025, 1e-4
    )
    assert res.epsilon == pytest.approx(expected, rel=1e-9)
    assert res.epsilon > 0.5
    assert epsilon_lower_bound(member, scores, delta=1e-4, seed=7) == res  # seeded
    assert epsilon_lower_bound(member, scores, delta=1e-4, seed=8) != res


def test_many_run_bound_is_the_threshold_bound_of_the_runs():
    rng = np.random.default_rng(4)
    included, scores = randomized_response(300, 1.5, rng)
    for method in ("split", "union"):
        many = many_run_epsilon_lower_bound(included, scores, delta=1e-5, method=method, seed=2)
        assert many == epsilon_lower_bound(included, scores, delta=1e-5, method=method, seed=2)
        assert isinstance(many, EpsilonLowerBound)


# --------------------------------------------------------------------------- (a) validity, power


def exceedance(bounds: list[float], truth: float) -> float:
    return float(np.mean(np.asarray(bounds) > truth + 1e-12))


def allowed(beta: float, trials: int) -> float:
    return beta + 3 * math.sqrt(beta * (1 - beta) / trials)


@pytest.mark.parametrize("method", ["split", "union"])
def test_threshold_bound_rarely_exceeds_the_true_epsilon_of_randomized_response(method):
    rng = np.random.default_rng(10)
    eps, trials, conf = 1.0, 300, 0.8
    bounds = []
    for _ in range(trials):
        included, scores = randomized_response(200, eps, rng)
        bounds.append(
            epsilon_lower_bound(included, scores, delta=0.0, confidence=conf, method=method).epsilon
        )
    assert exceedance(bounds, eps) <= allowed(1 - conf, trials)
    assert np.mean(bounds) > 0.2  # and it does detect something


@pytest.mark.parametrize("method", ["split", "union"])
def test_threshold_bound_rarely_exceeds_the_gaussian_mechanisms_epsilon_at_delta(method):
    rng = np.random.default_rng(11)
    mu, delta, trials, conf = 2.0, 1e-3, 300, 0.8
    truth = gaussian_epsilon(mu, delta)
    bounds = []
    for _ in range(trials):
        included = rng.random(200) < 0.5
        scores = rng.normal(size=200) + mu * included
        bounds.append(
            epsilon_lower_bound(
                included, scores, delta=delta, confidence=conf, method=method
            ).epsilon
        )
    assert exceedance(bounds, truth) <= allowed(1 - conf, trials)
    assert 0.3 < np.mean(bounds) < truth


def test_one_run_bound_rarely_exceeds_the_true_epsilon_and_is_nearly_exact_for_rr():
    # randomised response makes the correct guesses exactly Binomial(r, e^ε/(1+e^ε)): the
    # bound's level is then attained up to the binomial's discreteness
    rng = np.random.default_rng(12)
    eps, trials, conf = 1.0, 400, 0.8
    bounds = []
    for _ in range(trials):
        included, scores = randomized_response(200, eps, rng)
        bounds.append(
            one_run_epsilon_lower_bound(
                included, scores, k_pos=50, k_neg=50, confidence=conf
            ).epsilon
        )
    rate = exceedance(bounds, eps)
    assert rate <= allowed(1 - conf, trials)
    assert rate > 0.05  # not needlessly conservative: the test is tight for this mechanism


def test_one_run_bound_with_delta_rarely_exceeds_the_epsilon_at_that_delta():
    # ε-DP randomised response is (ε′, δ)-DP with ε′ = log((q − δ)/(1 − q)), q = e^ε/(1+e^ε)
    rng = np.random.default_rng(13)
    eps, delta, trials, conf = 1.5, 1e-3, 300, 0.8
    q = 1 / (1 + math.exp(-eps))
    truth = math.log((q - delta) / (1 - q))
    bounds = []
    for _ in range(trials):
        included, scores = randomized_response(200, eps, rng)
        bounds.append(
            one_run_epsilon_lower_bound(
                included, scores, k_pos=60, k_neg=60, delta=delta, confidence=conf
            ).epsilon
        )
    assert exceedance(bounds, truth) <= allowed(1 - conf, trials)
    assert np.mean(bounds) > 0.3


def test_with_many_examples_the_bounds_come_close_to_the_true_epsilon():
    rng = np.random.default_rng(14)
    eps = 2.0
    included, scores = randomized_response(20_000, eps, rng)
    for method in ("split", "union"):
        assert (
            0.9 * eps
            < epsilon_lower_bound(included, scores, delta=0.0, method=method).epsilon
            < eps
        )
    n_high = int(scores.sum())
    one = one_run_epsilon_lower_bound(included, scores, k_pos=n_high, k_neg=scores.size - n_high)
    assert 0.9 * eps < one.epsilon < eps
    assert one.guesses == one.canaries == 20_000


# --------------------------------------------------------------------------- (c) perfect attacks


def test_a_perfect_attack_gives_a_finite_bound_that_grows_with_n():
    beta, delta = 0.05, 1e-5
    bounds = []
    for n in (50, 200, 1000, 5000):
        member, scores = binary_counts(fp=0, n_neg=n, fn=0, n_pos=n)
        res = epsilon_lower_bound(member, scores, delta=delta, method="union")
        upper = 1 - (beta / (2 * n)) ** (1 / n)  # Clopper–Pearson upper bound at 0 of n
        assert res.epsilon == pytest.approx(math.log((1 - delta - upper) / upper), rel=1e-9)
        assert math.isfinite(res.epsilon)
        assert epsilon_lower_bound(member, scores, delta=delta).epsilon > 0
        bounds.append(res.epsilon)
    assert np.all(np.diff(bounds) > 0)


def test_a_perfect_one_run_attack_gives_the_binomial_closed_form():
    # all r guesses right: q^r = β at the bound, so ε = logit(β^(1/r))
    bounds = []
    for r in (10, 100, 1000):
        eps = one_run_epsilon_from_counts(r, r, confidence=0.95)
        q = 0.05 ** (1 / r)
        assert eps == pytest.approx(math.log(q / (1 - q)), abs=1e-8)
        bounds.append(eps)
    assert np.all(np.diff(bounds) > 0)


def test_constant_scores_prove_nothing():
    member = np.r_[np.ones(30, bool), np.zeros(30, bool)]
    for method in ("split", "union"):
        assert epsilon_lower_bound(member, np.zeros(60), delta=0.0, method=method).epsilon == 0.0
    # members stored first: ties are broken at random, not by position (which would be perfect)
    tied = one_run_epsilon_lower_bound(member, np.zeros(60), k_pos=20, k_neg=20)
    assert tied.epsilon == 0.0 and tied.correct < 30


# --------------------------------------------------------------------------- (d) δ


def test_a_larger_delta_never_raises_the_bound():
    rng = np.random.default_rng(5)
    member = rng.random(600) < 0.5
    scores = rng.normal(size=600) + 2.5 * member
    deltas = [0.0, 1e-6, 1e-4, 1e-2, 0.1, 0.3]
    for method in ("split", "union"):
        bounds = [
            epsilon_lower_bound(member, scores, delta=d, method=method).epsilon for d in deltas
        ]
        assert np.all(np.diff(bounds) <= 1e-12) and bounds[-1] < bounds[0]
    one_run = [
        one_run_epsilon_from_counts(1000, 900, m=2000, delta=d)
        for d in [0.0, 1e-6, 1e-5, 1e-4, 1e-3]
    ]
    assert np.all(np.diff(one_run) <= 1e-9) and one_run[-1] < one_run[0]


# --------------------------------------------------------------------------- (e) one run: brute force


def brute_force_epsilon(r: int, v: int, beta: float, p_value: Callable[[float], float]) -> float:
    """Largest ε on a 1e-4 grid whose p-value is at most β (0 if none)."""
    grid = np.arange(0.0, 15.0, 1e-4)
    rejected = [e for e in grid if p_value(e) <= beta]
    return float(max(rejected, default=0.0))


def binomial_tail(r: int, v: int, eps: float) -> float:
    return float(stats.binom.sf(v - 1, r, math.exp(eps) / (1 + math.exp(eps))))


@pytest.mark.parametrize("r, v", [(10, 10), (10, 9), (50, 30), (100, 80), (1000, 600), (500, 251)])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_one_run_bound_at_delta_zero_equals_a_brute_force_binomial_search(r, v, confidence):
    beta = 1 - confidence
    grid = np.arange(0.0, 15.0, 1e-4)
    tails = stats.binom.sf(v - 1, r, 1 / (1 + np.exp(-grid)))  # vectorised brute force
    brute = float(grid[tails <= beta].max()) if np.any(tails <= beta) else 0.0
    eps = one_run_epsilon_from_counts(r, v, confidence=confidence)
    assert brute - 1e-12 <= eps <= brute + 1e-4
    assert eps == 0.0 or one_run_p_value(r, v, epsilon=eps) <= beta
    assert one_run_p_value(r, v, epsilon=eps) == pytest.approx(binomial_tail(r, v, eps), rel=1e-12)


def approximate_dp_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The theorem's bound with the maximum over every i = 1..m (the function stops at v)."""
    q = math.exp(eps) / (1 + math.exp(eps))

    def f(k: Any) -> np.ndarray:  # P[Binomial(r, q) ≥ k]
        return np.where(k > 0, stats.binom.sf(k - 1, r, q), 1.0)

    i = np.arange(1, m + 1)
    worst = float(np.max((f(v - i) - f(v)) / i))
    return min(1.0, float(f(v)) + 2 * m * delta * worst)


@pytest.mark.parametrize(
    "m, r, v, delta",
    [(200, 100, 80, 1e-3), (1000, 200, 150, 1e-4), (60, 40, 38, 0.02), (300, 300, 260, 1e-5)],
)
def test_one_run_p_value_and_bound_with_delta_match_the_theorem_computed_directly(m, r, v, delta):
    for eps in (0.0, 0.5, 1.3, 3.0):
        assert one_run_p_value(r, v, epsilon=eps, delta=delta, m=m) == pytest.approx(
            approximate_dp_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15
        )
    bound = one_run_epsilon_from_counts(r, v, m=m, delta=delta, confidence=0.9)
    coarse = np.arange(0.0, 6.0, 2e-3)
    rejected = [e for e in coarse if approximate_dp_p_value(m, r, v, e, delta) <= 0.1]
    brute = max(rejected, default=0.0)
    assert brute - 1e-12 <= bound <= brute + 2e-3
    assert bound == 0.0 or approximate_dp_p_value(m, r, v, bound, delta) <= 0.1


def test_guess_grid_is_a_union_bound_over_its_pairs():
    rng = np.random.default_rng(6)
    included, scores = randomized_response(400, 2.0, rng)
    grid = [(20, 20), (50, 50), (100, 100), (50, 50)]  # the duplicate counts once
    res = one_run_epsilon_lower_bound_grid(included, scores, guess_counts=grid, confidence=0.95)
    each = [
        one_run_epsilon_lower_bound(
            included, scores, k_pos=a, k_neg=b, confidence=1 - 0.05 / 3
        ).epsilon
        for a, b in grid[:3]
    ]
    assert res.tried == 3 and res.confidence == 0.95
    assert res.epsilon == max(each) > 0
    assert (res.k_pos, res.k_neg) == grid[int(np.argmax(each))]
    single = one_run_epsilon_lower_bound(included, scores, k_pos=50, k_neg=50)
    assert one_run_epsilon_lower_bound_grid(included, scores, guess_counts=[(50, 50)]) == single


def test_one_run_guesses_the_top_and_bottom_scores():
    included = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.5, 0.05])
    res = one_run_epsilon_lower_bound(included, scores, k_pos=3, k_neg=2)
    # in: 0.9 (✓), 0.8 (✗), 0.7 (✓); out: 0.05 (✓), 0.1 (✗)
    assert (res.guesses, res.correct, res.canaries, res.tried) == (5, 3, 8, 1)
    assert res.as_dict()["correct"] == 3 and json.dumps(res.as_dict())
    assert one_run_epsilon_lower_bound(included, scores, k_pos=3, k_neg=2, seed=5) == res  # no ties


# --------------------------------------------------------------------------- (f) bad inputs


GOOD_M = np.array([1, 1, 0, 0, 1, 0], bool)
GOOD_S = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3])

BAD: list[tuple[Callable[[], Any], str]] = [
    (
        lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, confidence=1.0),
        "confidence must be in",
    ),
    (
        lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, confidence=0.0),
        "confidence must be in",
    ),
    (lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=-0.1), "delta must be in"),
    (lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=1.0), "delta must be in"),
    (lambda: epsilon_lower_bound(np.ones(6, bool), GOOD_S, delta=0.0), "only members"),
    (lambda: epsilon_lower_bound(GOOD_M, GOOD_S[:5], delta=0.0), "same length"),
    (lambda: epsilon_lower_bound(GOOD_M, np.r_[GOOD_S[:5], np.nan], delta=0.0), "NaN"),
    (
        lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, method="best"),
        "method must be one of",
    ),
    (lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, method="fixed"), "needs threshold="),
    (
        lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, method="union", threshold=0.5),
        "only for method='fixed'",
    ),
    (
        lambda: epsilon_lower_bound(np.r_[GOOD_M, True][[0, 2, 3, 5]], GOOD_S[:4], delta=0.0),
        "at least 2 members",
    ),
    (
        lambda: epsilon_lower_bound(GOOD_M, GOOD_S, delta=0.0, select_fraction=1.0),
        "select_fraction",
    ),
    (lambda: one_run_epsilon_from_counts(10, 11), "must be <= r"),
    (lambda: one_run_epsilon_from_counts(10, 5, m=9), "must be <= m"),
    (lambda: one_run_epsilon_from_counts(-1, 0), "must be >= 0"),
    (lambda: one_run_epsilon_from_counts(10.5, 5), "must be an integer"),
    (
        lambda: one_run_epsilon_from_counts(10, 5, delta=1e-5),
        "m \\(the number of randomised canaries\\)",
    ),
    (lambda: one_run_epsilon_from_counts(10, 5, confidence=1.5), "confidence must be in"),
    (lambda: one_run_p_value(10, 5, epsilon=-1.0), "epsilon must be >= 0"),
    (
        lambda: one_run_epsilon_lower_bound(GOOD_M, GOOD_S, k_pos=4, k_neg=3),
        "more than the 6 canaries",
    ),
    (lambda: one_run_epsilon_lower_bound(GOOD_M, GOOD_S, k_pos=-1, k_neg=3), "k_pos must be >= 0"),
    (
        lambda: one_run_epsilon_lower_bound(np.array([2, 0, 1, 0, 1, 0]), GOOD_S, k_pos=1, k_neg=1),
        "boolean-like",
    ),
    (
        lambda: one_run_epsilon_lower_bound_grid(GOOD_M, GOOD_S, guess_counts=[]),
        "guess_counts is empty",
    ),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_inputs_raise_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
