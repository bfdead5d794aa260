"""Comparing defences at equal utility loss (Liu et al. Fig. 3): interpolation and tables."""

import math

import numpy as np
import pytest

from privlab.federated.utility_matching import (
    DefencePoint,
    attack_at_utility,
    common_utility_range,
    curve,
    isotonic,
    utility_matched_table,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_isotonic_regression_pools_adjacent_violators():
    assert isotonic([1, 3, 2, 4]).tolist() == [1, 2.5, 2.5, 4]
    assert isotonic([3, 2, 1]).tolist() == [2, 2, 2]
    assert isotonic([0, 1, 5]).tolist() == [0, 1, 5]  # already monotone: unchanged
    assert isotonic([1, 3, 2], weights=[1, 1, 3]).tolist() == [1, 2.25, 2.25]
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.normal(size=12)
        fit = isotonic(v)
        assert np.all(np.diff(fit) >= -1e-12)
        assert fit.sum() == pytest.approx(v.sum())  # PAVA keeps the mean
    with pytest.raises(ValueError, match="positive"):
        isotonic([1, 2], weights=[1, 0])


def test_linear_interpolation_on_a_synthetic_curve():
    # utility loss = strength, attack PSNR = 30 − 10·strength
    points = [(s, s, 30 - 10 * s) for s in (0.0, 0.5, 1.0, 2.0)]
    got = attack_at_utility(points, [0.0, 0.25, 1.5, 2.0])
    assert got.tolist() == pytest.approx([30.0, 27.5, 15.0, 10.0])
    outside = attack_at_utility(points, [-0.1, 2.1])
    assert np.isnan(outside).all()  # no extrapolation
    assert attack_at_utility([(1.0, 0.3, 12.0)], [0.3, 0.4]).tolist()[0] == 12.0


def test_points_are_read_in_strength_order_with_utility_made_monotone():
    # shuffled input; the measured utility dips at strength 2 (noise)
    points = [
        DefencePoint(strength=3, utility_loss=0.30, attack_success=10),
        DefencePoint(strength=1, utility_loss=0.10, attack_success=25),
        DefencePoint(strength=2, utility_loss=0.06, attack_success=20),
        DefencePoint(strength=0, utility_loss=0.00, attack_success=30),
    ]
    knots, success = curve(points)
    # 0.10 and 0.06 pool to 0.08 and the two points merge (mean success 22.5)
    assert knots.tolist() == pytest.approx([0.0, 0.08, 0.30])
    assert success.tolist() == pytest.approx([30.0, 22.5, 10.0])
    grid = np.linspace(0, 0.3, 31)
    for method in ("linear", "pchip"):
        values = attack_at_utility(points, grid, method=method)
        assert np.all(np.diff(values) <= 1e-12), method  # monotone between monotone knots
        assert attack_at_utility(points, knots, method=method).tolist() == pytest.approx(
            success.tolist()
        )


def test_table_compares_defences_at_equal_utility_loss():
    curves = {
        # pruning: lower PSNR than DP at every utility loss (the paper's finding)
        "pruning": [(p, 0.5 * p, 20 - 15 * p) for p in (0.0, 0.5, 0.9, 0.99)],
        "dp": [(s, 0.1 * s, 20 - 2 * s) for s in (0.0, 1.0, 3.0, 5.0)],
    }
    low, high = common_utility_range(curves)
    assert (low, high) == pytest.approx((0.0, 0.495))
    rows = utility_matched_table(curves, levels=4)
    assert [r["utility_loss"] for r in rows] == pytest.approx(np.linspace(0, 0.495, 4).tolist())
    for r in rows:
        u = r["utility_loss"]
        assert r["pruning"] == pytest.approx(20 - 30 * u)
        assert r["dp"] == pytest.approx(20 - 20 * u)
    assert [r["best_defence"] for r in rows[1:]] == ["pruning"] * 3
    # an error metric (RMSE): higher is the better defence
    rmse = {k: [(s, u, -a) for s, u, a in v] for k, v in curves.items()}
    rows = utility_matched_table(rmse, [0.3], attack_higher_is_better=False)
    assert rows[0]["best_defence"] == "pruning"
    # a level outside one curve: NaN for it, the other still ranked
    rows = utility_matched_table(curves, [0.498, 0.6])
    assert math.isnan(rows[0]["pruning"]) and rows[0]["best_defence"] == "dp"
    assert rows[1]["best_defence"] is None  # outside both


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="do not overlap"):
        common_utility_range({"a": [(0, 0.0, 1), (1, 0.1, 0)], "b": [(0, 0.2, 1), (1, 0.3, 0)]})
    with pytest.raises(ValueError, match="strength, utility_loss, attack_success"):
        attack_at_utility([(1.0, 2.0)], [0.0])
    with pytest.raises(ValueError, match="finite"):
        DefencePoint(1.0, math.nan, 3.0)
    with pytest.raises(ValueError, match="interpolation"):
        attack_at_utility([(0, 0, 1), (1, 1, 0)], [0.5], method="cubic")  # type: ignore[arg-type]


def test_strongest_merge_takes_the_strongest_of_equal_cost_points() -> None:
    from privlab.federated.utility_matching import curve

    # strengths 0..3; the last three all cost 0.2 after the isotonic step
    points = [(0, 0.0, 0.1), (1, 0.3, 0.2), (2, 0.1, 0.5), (3, 0.2, 0.9)]
    knots, mean = curve(points)
    _, strongest = curve(points, merge="strongest")
    assert knots.tolist() == [0.0, 0.2]
    assert mean[1] == pytest.approx((0.2 + 0.5 + 0.9) / 3)
    assert strongest.tolist() == [0.1, 0.9]
    with pytest.raises(ValueError, match="merge"):
        curve(points, merge="median")  # type: ignore[arg-type]
