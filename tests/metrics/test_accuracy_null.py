"""Song et al.'s worst-case inference accuracy on small evaluation sets: its no-signal level
(a permutation null) and a confidence interval, checked against direct simulation."""

from __future__ import annotations

import numpy as np

from privlab.metrics.membership import (
    accuracy_interval,
    best_threshold,
    membership_metrics,
    null_accuracy,
)


def _labels(n: int) -> np.ndarray:
    return np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]


def test_the_null_matches_the_oracle_accuracy_of_scores_without_signal():
    member = _labels(599)
    rng = np.random.default_rng(0)
    # independent computation: the oracle accuracy of fresh no-signal scores, many times
    direct = [best_threshold(member, rng.random(len(member))).accuracy for _ in range(300)]
    null = null_accuracy(member, rng.random(len(member)), permutations=300, seed=1)
    assert abs(null["mean"] - np.mean(direct)) < 0.003
    assert 0.514 < null["mean"] < 0.522  # about 51.8 % for 599 vs 599, not 50 %
    assert abs(null["p95"] - np.quantile(direct, 0.95)) < 0.006
    small = null_accuracy(_labels(30), rng.random(60), seed=2)  # Table 7's per-class sets
    assert 0.55 < small["mean"] < 0.6


def test_ties_count_once_and_a_real_signal_clears_the_null():
    member = _labels(200)
    tied = np.where(member, 1.0, 1.0)  # one score for everybody: no threshold separates them
    assert null_accuracy(member, tied)["p95"] == 0.5
    rng = np.random.default_rng(3)
    leaky = np.where(member, rng.normal(0.5, 1, 400), rng.normal(0, 1, 400))
    metrics = membership_metrics(member, leaky)
    assert metrics["accuracy"] > metrics["accuracy_null"]["p95"]
    low, high = metrics["accuracy_ci"]
    assert low < metrics["accuracy"] < high


def test_the_interval_covers_the_accuracy_at_a_fixed_threshold():
    rng = np.random.default_rng(4)
    member, threshold = _labels(100), 0.3
    truth = 0.5  # no signal: TPR = P(s ≥ t) and TNR = P(s < t) average to 1/2 at any t
    hits = 0
    for _ in range(400):
        scores = rng.normal(0, 1, len(member))
        low, high = accuracy_interval(member, scores, threshold)
        hits += low <= truth <= high
    assert hits / 400 >= 0.95  # conservative (Bonferroni over TPR and TNR)
