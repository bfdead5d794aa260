"""ReRo bounds (Balle et al. 2022) against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from privlab.metrics.bounds import (
    dp_sgd_rdp,
    empirical_kappa,
    rero_gamma_dp,
    rero_gamma_dp_sgd,
    rero_gamma_finite,
    rero_gamma_rdp,
    rero_gamma_zcdp,
)


@pytest.mark.parametrize("rho, kappa", [(0.1, 1e-3), (1.0, 1e-4), (0.01, 0.05), (2.0, 1e-6)])
def test_zcdp_closed_form_equals_numerical_minimisation_over_alpha(rho, kappa):
    # ρ-zCDP is (α, αρ)-RDP for all α > 1; minimise Theorem 2's exponent numerically
    def exponent(alpha):
        return (alpha - 1) / alpha * (math.log(kappa) + alpha * rho)

    best = minimize_scalar(
        exponent, bounds=(1 + 1e-9, 1e6), method="bounded", options={"xatol": 1e-10}
    )
    assert rero_gamma_zcdp(rho, kappa) == pytest.approx(math.exp(best.fun), rel=1e-6)
    # and the RDP bound over a dense grid of orders approaches it from above
    alphas = np.linspace(1.001, 200, 200_000)
    assert rero_gamma_rdp(alphas, alphas * rho, kappa) == pytest.approx(
        rero_gamma_zcdp(rho, kappa), rel=1e-4
    )


def test_zcdp_bound_is_vacuous_past_log_one_over_kappa():
    assert rero_gamma_zcdp(math.log(100) + 1e-9, 0.01) == 1.0
    assert rero_gamma_zcdp(0.0, 0.01) == pytest.approx(0.01)  # no leakage: the baseline


def test_rdp_bound_tends_to_the_dp_bound_for_large_orders():
    eps, kappa = 0.5, 1e-3
    alphas = [10.0, 1e3, 1e6]
    gammas = [rero_gamma_rdp([a], [eps], kappa) for a in alphas]
    assert gammas == sorted(gammas, reverse=True)  # (κe^ε)^{(α−1)/α} falls to κe^ε < 1
    assert gammas[-1] == pytest.approx(rero_gamma_dp(eps, kappa), rel=1e-5)
    assert rero_gamma_dp(eps, kappa) == pytest.approx(kappa * math.exp(eps))


def test_bounds_are_probabilities():
    assert rero_gamma_dp(50.0, 0.1) == 1.0
    assert rero_gamma_dp(1e5, 0.1) == 1.0 and rero_gamma_rdp([2.0], [1e5], 0.1) == 1.0
    assert rero_gamma_finite(1e5, 0.001, 10) == pytest.approx(0.01)
    assert rero_gamma_finite(50.0, 0.1, 10) == 1.0
    assert rero_gamma_rdp([2.0], [100.0], 0.5) == 1.0
    with pytest.raises(ValueError, match="kappa"):
        rero_gamma_dp(1.0, 0.0)
    with pytest.raises(ValueError, match="orders"):
        rero_gamma_rdp([1.0], [0.1], 0.1)


def test_finite_support_bound_tends_to_kappa_e_eps():
    eps, kappa = 1.0, 1e-3
    values = [rero_gamma_finite(eps, kappa, z) for z in (10, 1_000, 10**9)]
    assert values == sorted(values) and values[-1] == pytest.approx(kappa * math.e, rel=1e-6)
    # with uniform prior over Z, κ = 1/|Z|: ε = 0 gives exactly the baseline
    assert rero_gamma_finite(0.0, 1 / 50, 50) == pytest.approx(1 / 50)


def test_dp_sgd_curve_matches_opacus_and_more_noise_gives_a_stronger_bound():
    from opacus.accountants import RDPAccountant

    orders, rdp = dp_sgd_rdp(sample_rate=0.1, noise_multiplier=1.0, steps=100)
    acc = RDPAccountant()
    acc.history = [(1.0, 0.1, 100)]
    eps_opacus, best_alpha = acc.get_privacy_spent(delta=1e-5)
    assert best_alpha in orders and len(rdp) == len(orders)
    kappa = 1e-3
    gammas = [
        rero_gamma_dp_sgd(kappa, sample_rate=0.1, noise_multiplier=s, steps=100)
        for s in (0.5, 1.0, 4.0)
    ]
    assert gammas[0] >= gammas[1] >= gammas[2] >= kappa
    assert eps_opacus > 0
    # no subsampling, one step: the Gaussian mechanism is (α, α/(2σ²))-RDP, i.e. ρ = 1/(2σ²)
    sigma = 3.0
    alphas = list(np.linspace(1.01, 100, 5000))
    gauss = rero_gamma_dp_sgd(
        kappa, sample_rate=1.0, noise_multiplier=sigma, steps=1, orders=alphas
    )
    assert gauss == pytest.approx(rero_gamma_zcdp(1 / (2 * sigma**2), kappa), rel=1e-3)


def test_empirical_kappa_counts_the_best_single_guess():
    # five points on a line, spacing 1 in a 1-pixel space: MSE = squared distance
    pool = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    assert empirical_kappa(pool, 0.0) == pytest.approx(1 / 5)
    assert empirical_kappa(pool, 1.0) == pytest.approx(3 / 5)  # guess 1 or 2 covers 3 points
    assert empirical_kappa(pool, 100.0) == pytest.approx(1.0)
    assert empirical_kappa(pool, 0.3, candidates=torch.tensor([[5.0]])) == 0.0


def test_rero_curve_matches_the_calibrated_points():
    from privlab.metrics.bounds import dp_sgd_rero_curve, rero_gamma_dp_sgd
    from privlab.training.heads import HeadDP

    n, epochs, kappa = 41, 20, 1e-3
    sigmas = [0.8, 2.0, 5.0]
    curve = dp_sgd_rero_curve(
        kappa, sample_rate=HeadDP.sample_rate(n), steps=epochs * HeadDP.batches_per_epoch(n),
        delta=HeadDP.delta(n), noise_multipliers=sigmas,
    )  # fmt: skip
    for sigma, eps, gamma in zip(sigmas, curve["epsilon"], curve["gamma"], strict=True):
        dp = HeadDP(noise_multiplier=sigma)
        assert eps == pytest.approx(dp.epsilon(n, epochs), rel=1e-9)
        assert gamma == pytest.approx(
            rero_gamma_dp_sgd(
                kappa,
                sample_rate=HeadDP.sample_rate(n),
                noise_multiplier=sigma,
                steps=epochs * HeadDP.batches_per_epoch(n),
            )
        )
    assert curve["epsilon"] == sorted(curve["epsilon"], reverse=True)  # more noise, less ε
    assert curve["gamma"] == sorted(curve["gamma"], reverse=True)
