"""Reconstruction-as-hypothesis-test metrics against independent computations."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from privlab.metrics.reconstruction import (
    constant_guess_tpr,
    gaussian_roc_tpr,
    min_mse,
    nn_mse_threshold,
    rates_at,
    reconstruction_roc,
    to_symmetric,
    tpr_at_fpr,
)


def test_threshold_is_the_mean_nearest_neighbour_mse():
    train = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    val = torch.tensor([[0.0, 0.5], [1.0, 1.0], [3.0, 1.0]])
    # nearest MSEs: (0 + .25)/2, 0, (4 + 0)/2
    assert nn_mse_threshold(train, val) == pytest.approx((0.125 + 0.0 + 2.0) / 3)
    assert min_mse(torch.tensor([3.0, 1.0]), train) == pytest.approx(2.0)
    assert torch.equal(to_symmetric(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_roc_counts_successes_on_both_hypotheses():
    pos, neg = np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.6, 0.7, 0.9])
    assert rates_at(pos, neg, 0.35) == (pytest.approx(2 / 3), pytest.approx(1 / 4))
    taus, tpr, fpr = reconstruction_roc(pos, neg)
    assert tpr[0] == fpr[0] == 0 and tpr[-1] == fpr[-1] == 1
    assert np.all(np.diff(tpr) >= 0) and np.all(np.diff(fpr) >= 0)
    assert tpr_at_fpr(pos, neg, 0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(pos, neg, 0.25) == pytest.approx(1.0)


def test_eq6_is_the_threshold_roc_of_two_gaussians():
    mu0, s0, mu1, s1 = 0.05, 0.02, 0.12, 0.03
    f = np.array([0.001, 0.01, 0.1, 0.5])
    # independent: τ = μ1 + σ1·Φ⁻¹(FPR), TPR = Φ((τ − μ0)/σ0)
    expected = norm.cdf((mu1 + s1 * norm.ppf(f) - mu0) / s0)
    assert np.allclose(gaussian_roc_tpr(f, mu0, s0, mu1, s1), expected, atol=1e-12)
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(mu0, s0, 200_000), rng.normal(mu1, s1, 200_000)
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(
        float(gaussian_roc_tpr(0.01, mu0, s0, mu1, s1)), abs=0.01
    )


def test_constant_guess_succeeds_more_often_on_larger_training_sets():
    assert constant_guess_tpr(0.01, 1) == pytest.approx(0.01)
    assert constant_guess_tpr(0.01, 40) == pytest.approx(1 - 0.99**40)
    assert constant_guess_tpr(0.01, 10) < constant_guess_tpr(0.01, 40) < 1


def test_likelihood_ratio_roc_dominates_the_threshold_roc_when_variances_differ():
    from privlab.metrics.reconstruction import likelihood_ratio_roc

    rng = np.random.default_rng(1)
    # trained-on values are *more spread out*: small and large values both point to it
    pos, neg = rng.normal(0.10, 0.05, 20_000), rng.normal(0.12, 0.01, 20_000)
    tpr, fpr = likelihood_ratio_roc(pos, neg)
    assert tpr[0] == fpr[0] == 0 and tpr[-1] == fpr[-1] == 1
    lr_at = tpr[fpr <= 0.01].max()
    assert lr_at > tpr_at_fpr(pos, neg, 0.01) + 0.1


def test_largest_defended_epsilon_interpolates_in_log_epsilon():
    from privlab.metrics.reconstruction import largest_defended_epsilon

    out = largest_defended_epsilon([100, 1, 10], [0.2, 0.005, 0.025])
    assert out["measured"] == 1
    # TPR 0.005 at ε=1, 0.025 at ε=10: 0.015 is halfway, at √10 in log ε
    assert out["interpolated"] == pytest.approx(10**0.5)
    assert largest_defended_epsilon([1, 10], [0.1, 0.2])["measured"] is None
    every = largest_defended_epsilon([1, 10], [0.0, 0.01])
    assert every["measured"] == every["interpolated"] == 10
