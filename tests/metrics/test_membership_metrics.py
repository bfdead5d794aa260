"""Known-value and property tests for privlab.metrics.membership (Song et al. Eqs. 15-17)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from privlab.metrics import (
    RocCurve,
    ThresholdResult,
    TprAtFpr,
    accuracy_at_threshold,
    advantage,
    auc,
    best_threshold,
    clopper_pearson,
    inference_accuracy,
    membership_metrics,
    roc_curve,
    tpr_at_fpr,
)

try:  # hypothesis is a dev dependency; fall back to seeded random cases without it
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_HYPOTHESIS = False

# Hand example used throughout: members score 0.9, 0.8, 0.5; non-members 0.5, 0.3, 0.1.
# The 0.5/0.5 member/non-member tie must enter the ROC curve as one diagonal step.
M = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
S = np.array([0.9, 0.5, 0.5, 0.1, 0.8, 0.3])

PERFECT_M = np.array([0, 0, 0, 1, 1, 1, 1], dtype=bool)
PERFECT_S = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9])


def pairwise_auc(m: np.ndarray, s: np.ndarray) -> float:
    """Independent O(n^2) Mann-Whitney count with ties counted 1/2."""
    pos, neg = s[m], s[~m]
    gt = pos[:, None] > neg[None, :]
    eq = pos[:, None] == neg[None, :]
    return float((gt.sum() + 0.5 * eq.sum()) / gt.size)


def brute_force_accuracies(m: np.ndarray, s: np.ndarray) -> list[float]:
    """A_inf of ``s >= t`` for every score t and for 'nobody' (+inf)."""
    ts = [*np.unique(s).tolist(), math.inf]
    return [inference_accuracy(m, s >= t) for t in ts]


def random_case(seed: int, n: int = 60, levels: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Random labels (both classes present) and integer-valued scores with many ties."""
    rng = np.random.default_rng(seed)
    m = rng.random(n) < 0.4
    m[0], m[1] = True, False
    s = rng.integers(0, levels, size=n).astype(float) + 0.25 * m * rng.random(n)
    return m, s


# --------------------------------------------------------------------------- roc_curve


def test_roc_curve_hand_example_with_tie() -> None:
    r = roc_curve(M, S)
    assert isinstance(r, RocCurve)
    np.testing.assert_array_equal(r.thresholds, [np.inf, 0.9, 0.8, 0.5, 0.3, 0.1])
    np.testing.assert_allclose(r.tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    # the tied 0.5 pair enters together: (0, 2/3) -> (1/3, 1), no (0, 1) or (1/3, 2/3) point
    np.testing.assert_allclose(r.fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])


def test_roc_curve_endpoints_and_monotonicity() -> None:
    m, s = random_case(3)
    r = roc_curve(m, s)
    assert (r.fpr[0], r.tpr[0]) == (0.0, 0.0) and r.thresholds[0] == np.inf
    assert (r.fpr[-1], r.tpr[-1]) == (1.0, 1.0) and r.thresholds[-1] == s.min()
    assert np.all(np.diff(r.thresholds) < 0)
    assert np.all(np.diff(r.fpr) >= 0) and np.all(np.diff(r.tpr) >= 0)
    # every point is reproduced by the rule scores >= threshold
    for f, t, th in zip(r.fpr, r.tpr, r.thresholds, strict=True):
        pred = s >= th
        assert f == pred[~m].mean() and t == pred[m].mean()


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed: int) -> None:
    m, s = random_case(seed, n=200, levels=15)
    r = roc_curve(m, s)
    fpr, tpr, thr = skm.roc_curve(m, s, drop_intermediate=False)
    np.testing.assert_allclose(r.fpr, fpr)
    np.testing.assert_allclose(r.tpr, tpr)
    np.testing.assert_array_equal(r.thresholds, thr)
    # sklearn's default (collinear points dropped) is a subset of our points
    ours = set(zip(r.fpr.round(12), r.tpr.round(12), strict=True))
    fpr_d, tpr_d, _ = skm.roc_curve(m, s)
    assert set(zip(fpr_d.round(12), tpr_d.round(12), strict=True)) <= ours


# --------------------------------------------------------------------------- auc


def test_auc_hand_example() -> None:
    # 0.9 and 0.8 beat all 3 non-members; 0.5 beats 0.3, 0.1 and ties 0.5 -> 8.5 / 9
    assert auc(M, S) == pytest.approx(8.5 / 9)


def test_auc_extremes() -> None:
    assert auc(PERFECT_M, PERFECT_S) == 1.0
    assert auc(PERFECT_M, -PERFECT_S) == 0.0
    assert auc(PERFECT_M, np.full(7, 0.3)) == 0.5


def test_auc_equals_trapezoid_of_roc() -> None:
    m, s = random_case(11, n=300)
    r = roc_curve(m, s)
    assert auc(m, s) == pytest.approx(np.trapezoid(r.tpr, r.fpr), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_and_sklearn(seed: int) -> None:
    m, s = random_case(seed, n=400, levels=30)
    assert auc(m, s) == pytest.approx(pairwise_auc(m, s), abs=1e-12)
    assert auc(m, s) == pytest.approx(skm.roc_auc_score(m, s), abs=1e-12)
    # continuous scores (no ties)
    rng = np.random.default_rng(seed)
    sc = rng.normal(size=400) + 0.5 * m
    assert auc(m, sc) == pytest.approx(skm.roc_auc_score(m, sc), abs=1e-12)


def test_random_scores_give_chance_level() -> None:
    rng = np.random.default_rng(0)
    m = rng.random(20_000) < 0.5
    s = rng.random(20_000)
    assert abs(auc(m, s) - 0.5) < 0.02
    best = best_threshold(m, s)
    assert 0.5 <= best.accuracy < 0.525
    assert 0.0 <= best.advantage < 0.05
    assert tpr_at_fpr(m, s, 0.01).tpr < 0.03


# --------------------------------------------------------------------------- Eq. 15 / 16


def test_inference_accuracy_is_balanced() -> None:
    is_member = [1, 1, 1, 1, 0, 0]
    pred = [1, 1, 1, 0, 0, 1]
    # 3/(2*4) + 1/(2*2) = 0.625 (plain accuracy would be 4/6)
    assert inference_accuracy(is_member, pred) == pytest.approx(0.625)
    # guessing "member" for everybody is 0.5 regardless of class imbalance
    assert inference_accuracy(is_member, [1] * 6) == 0.5
    assert inference_accuracy(is_member, [0] * 6) == 0.5
    assert inference_accuracy(is_member, is_member) == 1.0
    assert inference_accuracy(is_member, [0, 0, 0, 0, 1, 1]) == 0.0


def test_inference_accuracy_accepts_bool_like_inputs() -> None:
    ref = inference_accuracy(np.array([True, False, True]), np.array([True, True, False]))
    assert inference_accuracy([1, 0, 1], [1.0, 1.0, 0.0]) == ref
    assert inference_accuracy(np.array([1, 0, 1], dtype=np.uint8), [True, True, False]) == ref
    assert ref == pytest.approx(0.25 + 0.0)


@pytest.mark.parametrize(
    ("acc", "adv"), [(0.5, 0.0), (1.0, 1.0), (0.75, 0.5), (0.0, -1.0), (0.6, 0.2)]
)
def test_advantage_eq16(acc: float, adv: float) -> None:
    assert advantage(acc) == pytest.approx(adv)


@pytest.mark.parametrize("bad", [-0.1, 1.2, math.nan])
def test_advantage_rejects_invalid_accuracy(bad: float) -> None:
    with pytest.raises(ValueError, match="accuracy"):
        advantage(bad)


# --------------------------------------------------------------------------- thresholds


def test_accuracy_at_threshold_hand_example() -> None:
    assert accuracy_at_threshold(M, S, math.inf) == 0.5
    assert accuracy_at_threshold(M, S, -math.inf) == 0.5
    # >= 0.5 flags 3/3 members and 1/3 non-members: 3/6 + 2/6
    assert accuracy_at_threshold(M, S, 0.5) == pytest.approx(5 / 6)
    # > 0.5 (e.g. 0.65) flags 2/3 members, 0 non-members: 2/6 + 3/6
    assert accuracy_at_threshold(M, S, 0.65) == pytest.approx(5 / 6)
    assert accuracy_at_threshold(M, S, 0.85) == pytest.approx(1 / 6 + 1 / 2)


def test_best_threshold_hand_example() -> None:
    r = best_threshold(M, S)
    assert isinstance(r, ThresholdResult)
    # two splits tie at 5/6; the higher threshold, midpoint of 0.8 and 0.5, wins
    assert r.threshold == pytest.approx(0.65)
    assert r.accuracy == pytest.approx(5 / 6)
    assert r.advantage == pytest.approx(2 / 3)
    assert accuracy_at_threshold(M, S, r.threshold) == r.accuracy


def test_best_threshold_perfect_separation() -> None:
    r = best_threshold(PERFECT_M, PERFECT_S)
    assert r.threshold == pytest.approx(0.45)  # midpoint of 0.3 and 0.6
    assert r.accuracy == 1.0 and r.advantage == 1.0


def test_best_threshold_reversed_and_constant() -> None:
    r = best_threshold(PERFECT_M, -PERFECT_S)
    assert r.accuracy == 0.5 and r.advantage == 0.0
    assert math.isinf(r.threshold)
    assert accuracy_at_threshold(PERFECT_M, -PERFECT_S, r.threshold) == 0.5
    c = best_threshold(PERFECT_M, np.zeros(7))
    assert c.accuracy == 0.5 and math.isinf(c.threshold)


def test_best_threshold_minus_inf_when_everybody_is_best() -> None:
    # only non-member has the top score: any finite split loses, "everybody" is 0.5
    m = np.array([0, 1, 1], dtype=bool)
    s = np.array([1.0, 0.0, 0.0])
    r = best_threshold(m, s)
    assert r.accuracy == 0.5
    # the +inf (nobody) split ties with -inf and has the higher threshold
    assert r.threshold == math.inf


@pytest.mark.parametrize("seed", range(10))
def test_best_threshold_is_optimal_and_reproducible(seed: int) -> None:
    m, s = random_case(seed)
    r = best_threshold(m, s)
    assert accuracy_at_threshold(m, s, r.threshold) == r.accuracy
    assert r.accuracy == pytest.approx(max(brute_force_accuracies(m, s)))
    assert r.advantage == pytest.approx(2 * (r.accuracy - 0.5))
    # the threshold lies strictly between scores, never on one (unless +/-inf)
    assert math.isinf(r.threshold) or r.threshold not in set(s.tolist())


def test_best_threshold_adjacent_floats_and_large_values() -> None:
    a = 1.0
    b = np.nextafter(1.0, 2.0)
    r = best_threshold([0, 1], [a, b])
    assert r.accuracy == 1.0 and a < r.threshold <= b
    big = best_threshold([0, 1], [-1e308, 1e308])
    assert big.accuracy == 1.0 and math.isfinite(big.threshold)
    assert accuracy_at_threshold([0, 1], [-1e308, 1e308], big.threshold) == 1.0


@pytest.mark.parametrize(
    "scores", [[0.0, 5e-324], [-0.0, 0.0], [5e-324, -5e-324], [-1e308, 1e308], [1e-300, 2e-300]]
)
def test_float_edge_cases(scores: list[float]) -> None:
    m = np.array([False, True])
    s = np.array(scores)
    check_properties(m, s)
    check_properties(~m, s)


def test_shadow_threshold_transfers() -> None:
    rng = np.random.default_rng(5)
    shadow_m = rng.random(2000) < 0.5
    shadow_s = rng.normal(size=2000) + shadow_m
    eval_m = rng.random(2000) < 0.5
    eval_s = rng.normal(size=2000) + eval_m
    tau = best_threshold(shadow_m, shadow_s).threshold
    honest = accuracy_at_threshold(eval_m, eval_s, tau)
    oracle = best_threshold(eval_m, eval_s).accuracy
    assert honest <= oracle
    assert honest == pytest.approx(stats.norm.cdf(0.5), abs=0.03)  # Bayes-optimal ~0.691


# --------------------------------------------------------------------------- TPR @ FPR


def test_tpr_at_fpr_hand_example() -> None:
    r0 = tpr_at_fpr(M, S, 0.0)
    assert isinstance(r0, TprAtFpr)
    assert (r0.tp, r0.positives, r0.threshold, r0.fpr_achieved) == (2, 3, 0.8, 0.0)
    assert r0.tpr == pytest.approx(2 / 3)
    # 1/3 is not within a 0.3 budget; the tie at 0.5 cannot be split
    assert tpr_at_fpr(M, S, 0.3).tpr == pytest.approx(2 / 3)
    r4 = tpr_at_fpr(M, S, 0.4)
    assert r4.tpr == 1.0 and r4.threshold == 0.5 and r4.fpr_achieved == pytest.approx(1 / 3)
    # a looser budget does not buy extra false positives once TPR is maximal
    r1 = tpr_at_fpr(M, S, 1.0)
    assert r1.tpr == 1.0 and r1.threshold == 0.5 and r1.fpr_achieved == pytest.approx(1 / 3)


def test_tpr_at_fpr_tie_makes_budget_unreachable() -> None:
    r = tpr_at_fpr([1, 0], [1.0, 1.0], 0.5)
    assert r.tpr == 0.0 and r.tp == 0 and r.threshold == math.inf and r.fpr_achieved == 0.0
    assert (r.ci_low, r.ci_high) == clopper_pearson(0, 1)


@pytest.mark.parametrize("fpr", [0.0, 1e-3, 0.01, 0.1, 0.5, 1.0])
def test_tpr_at_fpr_perfect_separation(fpr: float) -> None:
    r = tpr_at_fpr(PERFECT_M, PERFECT_S, fpr)
    assert r.tpr == 1.0 and r.fpr_achieved == 0.0 and r.ci_high == 1.0


def test_tpr_at_fpr_exact_decimal_budget() -> None:
    # 29 of 100 non-members is exactly FPR 0.29 and must be admissible
    m = np.array([True] * 10 + [False] * 100)
    s = np.concatenate([np.full(10, 2.0), np.linspace(1.0, 0.0, 100)])
    s[10:39] = 3.0  # 29 non-members above every member
    r = tpr_at_fpr(m, s, 0.29)
    assert r.fpr_achieved == 0.29 and r.tpr == 1.0


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.1, 0.37, 1.0])
def test_tpr_at_fpr_within_budget_and_maximal(seed: int, fpr: float) -> None:
    m, s = random_case(seed, n=300, levels=40)
    r = tpr_at_fpr(m, s, fpr)
    assert r.fpr_achieved <= fpr
    pred = s >= r.threshold
    assert r.tp == int((pred & m).sum()) and r.positives == int(m.sum())
    assert r.fpr_achieved == pytest.approx(pred[~m].mean())
    assert (r.ci_low, r.ci_high) == clopper_pearson(r.tp, r.positives)
    # brute force over every threshold
    feasible = [(s >= t)[m].mean() for t in [*np.unique(s), math.inf] if (s >= t)[~m].mean() <= fpr]
    assert r.tpr == pytest.approx(max(feasible))
    # and, among thresholds reaching that TPR, the fewest false positives
    fprs_at_best = [
        (s >= t)[~m].mean() for t in [*np.unique(s), math.inf] if (s >= t)[m].mean() == r.tpr
    ]
    assert r.fpr_achieved == pytest.approx(min(fprs_at_best))


# --------------------------------------------------------------------------- Clopper-Pearson


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.3085),
        (5, 10, 0.1871, 0.8129),
        (10, 10, 0.6915, 1.0),
        (1, 10, 0.0025, 0.4450),
        (50, 100, 0.3983, 0.6017),
    ],
)
def test_clopper_pearson_known_values(k: int, n: int, lo: float, hi: float) -> None:
    got = clopper_pearson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (3, 7), (17, 40), (999, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_binomtest(k: int, n: int, confidence: float) -> None:
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    got = clopper_pearson(k, n, confidence)
    assert got == pytest.approx((ref.low, ref.high), abs=1e-9)
    # symmetry: interval of n-k is the mirror image
    lo2, hi2 = clopper_pearson(n - k, n, confidence)
    assert got == pytest.approx((1 - hi2, 1 - lo2), abs=1e-9)


@pytest.mark.parametrize(
    ("k", "n", "conf"), [(0, 0, 0.95), (-1, 5, 0.95), (6, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0)]
)
def test_clopper_pearson_rejects_invalid(k: int, n: int, conf: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n, conf)


# --------------------------------------------------------------------------- summary dict


def test_membership_metrics_dict() -> None:
    out = membership_metrics(M, S)
    assert set(out) == {
        "accuracy",
        "accuracy_ci",
        "accuracy_null",
        "advantage",
        "threshold",
        "auc",
        "tpr_at_fpr",
        "tpr_at_fpr_ci",
        "n_members",
        "n_nonmembers",
    }
    assert list(out["tpr_at_fpr"]) == ["0.1", "0.01", "0.001"]
    assert list(out["tpr_at_fpr_ci"]) == ["0.1", "0.01", "0.001"]
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["advantage"] == pytest.approx(2 / 3)
    assert out["threshold"] == pytest.approx(0.65)
    assert out["auc"] == pytest.approx(8.5 / 9)
    assert out["tpr_at_fpr"]["0.1"] == pytest.approx(2 / 3)
    assert out["tpr_at_fpr_ci"]["0.01"] == pytest.approx(list(clopper_pearson(2, 3)))
    assert (out["n_members"], out["n_nonmembers"]) == (3, 3)
    # plain Python types only, JSON round-trip is lossless
    for key in ("accuracy", "advantage", "threshold", "auc"):
        assert type(out[key]) is float
    assert type(out["n_members"]) is int and type(out["n_nonmembers"]) is int
    assert all(type(v) is float for v in out["tpr_at_fpr"].values())
    assert all(type(x) is float for v in out["tpr_at_fpr_ci"].values() for x in v)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_membership_metrics_custom_fprs() -> None:
    out = membership_metrics(PERFECT_M, PERFECT_S, fprs=(0.5, 0.0001))
    assert out["tpr_at_fpr"] == {"0.5": 1.0, "0.0001": 1.0}
    assert out["accuracy"] == 1.0 and out["advantage"] == 1.0 and out["auc"] == 1.0


def test_functions_do_not_modify_inputs() -> None:
    m, s = M.copy(), S.copy()
    membership_metrics(m, s)
    roc_curve(m, s)
    np.testing.assert_array_equal(m, M)
    np.testing.assert_array_equal(s, S)


# --------------------------------------------------------------------------- validation


SCORE_FUNCS = [
    roc_curve,
    auc,
    best_threshold,
    membership_metrics,
    lambda m, s: accuracy_at_threshold(m, s, 0.5),
    lambda m, s: tpr_at_fpr(m, s, 0.1),
]


@pytest.mark.parametrize("func", SCORE_FUNCS)
@pytest.mark.parametrize(
    ("is_member", "scores", "match"),
    [
        ([1, 0, 1], [0.1, 0.2], "same length"),
        ([], [], "empty"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "only members"),
        ([0, 0], [0.1, 0.2], "only non-members"),
        ([1, 0, 1, 0], [0.1, np.nan, 0.3, np.nan], "2 NaN"),
        ([1, 0], [0.1, np.inf], "infinite"),
        ([1, 0, 2], [0.1, 0.2, 0.3], "boolean-like"),
        ([1, 0, 0.5], [0.1, 0.2, 0.3], "boolean-like"),
        (["yes", "no"], [0.1, 0.2], "boolean-like"),
        ([[1, 0]], [[0.1, 0.2]], "1-D"),
        ([1, 0], ["a", "b"], "real numbers"),
    ],
)
def test_validation_errors(
    func: Callable[[Any, Any], object], is_member: Any, scores: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        func(is_member, scores)


@pytest.mark.parametrize(
    ("is_member", "pred", "match"),
    [
        ([1, 0, 1], [1, 0], "same length"),
        ([1, 1], [1, 0], "only members"),
        ([1, 0], [1, 3], "predicted_member"),
        ([], [], "empty"),
    ],
)
def test_inference_accuracy_errors(is_member: Any, pred: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        inference_accuracy(is_member, pred)


def test_threshold_and_fpr_errors() -> None:
    with pytest.raises(ValueError, match="threshold is NaN"):
        accuracy_at_threshold(M, S, math.nan)
    for bad in (-0.01, 1.5, math.nan):
        with pytest.raises(ValueError, match="fpr"):
            tpr_at_fpr(M, S, bad)
    with pytest.raises(ValueError, match="fpr"):
        membership_metrics(M, S, fprs=(0.1, 2.0))


# --------------------------------------------------------------------------- properties


def check_properties(m: np.ndarray, s: np.ndarray) -> None:
    """Invariants that must hold for any valid input."""
    a = auc(m, s)
    assert a == pytest.approx(pairwise_auc(m, s), abs=1e-12)
    r = best_threshold(m, s)
    assert accuracy_at_threshold(m, s, r.threshold) == r.accuracy
    assert r.accuracy == pytest.approx(max(brute_force_accuracies(m, s)), abs=1e-12)
    assert 0.5 <= r.accuracy <= 1.0
    for f in (0.0, 0.1, 0.5):
        t = tpr_at_fpr(m, s, f)
        assert t.fpr_achieved <= f
        assert t.ci_low <= t.tpr <= t.ci_high


if HAVE_HYPOTHESIS:
    _pair = st.tuples(st.booleans(), st.integers(-5, 5) | st.floats(-1e6, 1e6))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_pair, min_size=2, max_size=40))
    def test_properties_hypothesis(pairs: list[tuple[bool, float]]) -> None:
        m = np.array([p[0] for p in pairs], dtype=bool)
        if m.all() or not m.any():
            m[0] = not m[0]
        s = np.array([p[1] for p in pairs], dtype=float)
        check_properties(m, s)

else:

    @pytest.mark.parametrize("seed", range(200))
    def test_properties_random(seed: int) -> None:
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 41))
        m = rng.random(n) < rng.uniform(0.1, 0.9)
        m[0], m[-1] = True, False
        if seed % 2:
            s = rng.integers(-5, 6, size=n).astype(float)  # heavy ties
        else:
            s = rng.uniform(-1e6, 1e6, size=n)
        check_properties(m, s)
