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


def _logit_gaussian(mu: float, sigma: float, n: int, seed: int) -> np.ndarray:
    """min-MSE values whose logit(ℓ/4) is N(μ, σ²): the paper's model of App. A.1."""
    phi = np.random.default_rng(seed).normal(mu, sigma, n)
    return 4 / (1 + np.exp(-phi))


def test_the_neyman_pearson_roc_is_fitted_on_the_papers_logit_of_the_mse():
    from privlab.metrics.reconstruction import likelihood_ratio_roc, mse_logit

    assert np.allclose(mse_logit(4 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0])))), [-2, 0, 3])
    # ℓ is skewed (logit-normal): a Gaussian fit on raw ℓ would misplace the cut, on φ it is
    # exact, so the NP ROC meets Eq. 6 with the logit fits
    pos, neg = _logit_gaussian(-3.0, 0.8, 20_000, 1), _logit_gaussian(-1.5, 0.4, 20_000, 2)
    tpr, fpr = likelihood_ratio_roc(pos, neg)
    at = tpr[fpr <= 0.01].max()
    phi_p, phi_n = mse_logit(pos), mse_logit(neg)
    # independent: the NP acceptance region for two Gaussians, evaluated by simulation
    mu0, s0, mu1, s1 = phi_p.mean(), phi_p.std(), phi_n.mean(), phi_n.std()

    def llr(v: np.ndarray) -> np.ndarray:
        return -0.5 * ((v - mu0) / s0) ** 2 - np.log(s0) + 0.5 * ((v - mu1) / s1) ** 2 + np.log(s1)

    cut = np.quantile(llr(phi_n), 0.99)
    assert at == pytest.approx(np.mean(llr(phi_p) > cut), abs=0.01)


def test_theorem1_the_three_rocs_coincide_when_the_logit_is_gaussian():
    from privlab.metrics.reconstruction import theorem1_check

    # equal variances: the NP region is a half-line, so all three curves are one (Theorem 1)
    pos, neg = _logit_gaussian(-3.0, 0.5, 20_000, 3), _logit_gaussian(-2.0, 0.5, 20_000, 4)
    check = theorem1_check(pos, neg)
    assert check["max_gap_cumulative_np"] < 0.03
    assert check["max_gap_np_analytic"] < 0.03
    assert check["max_gap_cumulative_analytic"] < 0.03
    assert check["fpr_from"] == pytest.approx(1e-3)
    # a bimodal trained-on law breaks the assumption: the analytic curve no longer fits
    mixed = np.r_[_logit_gaussian(-5.0, 0.3, 10_000, 5), _logit_gaussian(-1.0, 0.3, 10_000, 6)]
    assert theorem1_check(mixed, neg)["max_gap_np_analytic"] > 0.1
