"""Reconstruction robustness (ReRo) bounds of Balle, Cherubin & Hayes (S&P 2022).

A mechanism M is (η, γ)-ReRo for a prior π over targets and an error ℓ if no attack, even one
that knows every other training point, reconstructs the target within error η with probability
above γ. The bounds depend on the prior only through the *baseline success*

    κ = κ_{π,ℓ}(η) = sup_{z₀} P_{Z∼π}[ℓ(Z, z₀) ≤ η],

the chance of a good guess without seeing the model, and on the mechanism's privacy guarantee:

* ε-DP (Corollary 3): γ = κ·e^ε;
* (α, ε(α))-RDP (Theorem 2): γ = min_α (κ·e^{ε(α)})^{(α−1)/α}, e.g. over DP-SGD's RDP curve;
* ρ-zCDP (Corollary 4; (α, αρ)-RDP for all α): γ = exp(−(√log(1/κ) − √ρ)²) for ρ < log(1/κ);
* a finite prior support Z under ε-DP with the 0/1 error ([65, Thm 3]):
  γ = |Z|·κ·e^ε / (|Z| + e^ε − 1), which tends to κ·e^ε as |Z| grows.

Every bound is a probability, so it is clipped to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from privlab.metrics.reconstruction import pairwise_mse
from privlab.training.dp import epsilon_from_rdp, rdp_curve

if TYPE_CHECKING:
    from privlab.training.heads import HeadDP


def _check_kappa(kappa: float) -> None:
    if not 0 < kappa <= 1:
        raise ValueError(f"kappa must be a probability in (0, 1], got {kappa}")


def rero_gamma_dp(eps: float, kappa: float) -> float:
    """Corollary 3: an ε-DP mechanism is (η, κ·e^ε)-ReRo."""
    _check_kappa(kappa)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return math.exp(min(0.0, math.log(kappa) + eps))  # clipped to 1 (and no overflow)


def rero_gamma_rdp(orders: Sequence[float], rdp: Sequence[float], kappa: float) -> float:
    """Theorem 2 with α optimised: min over the given orders α > 1 of (κ·e^{ε(α)})^{(α−1)/α}."""
    _check_kappa(kappa)
    a = np.asarray(orders, dtype=float)
    e = np.asarray(rdp, dtype=float)
    if a.shape != e.shape or a.size == 0:
        raise ValueError("orders and rdp must be non-empty and of equal length")
    if np.any(a <= 1):
        raise ValueError("RDP orders must be > 1")
    exponent = (a - 1) / a * (math.log(kappa) + e)
    return math.exp(min(0.0, float(np.min(exponent))))


def rero_gamma_zcdp(rho: float, kappa: float) -> float:
    """Corollary 4: ρ-zCDP gives γ = exp(−(√log(1/κ) − √ρ)²) when ρ < log(1/κ), else 1."""
    _check_kappa(kappa)
    if rho < 0:
        raise ValueError(f"rho must be non-negative, got {rho}")
    budget = math.log(1 / kappa)
    if rho >= budget:
        return 1.0
    return math.exp(-((math.sqrt(budget) - math.sqrt(rho)) ** 2))


def rero_gamma_finite(eps: float, kappa: float, support: int) -> float:
    """ε-DP over a prior with ``support`` possible targets and the 0/1 error ([65, Thm 3])."""
    _check_kappa(kappa)
    if support < 1 or eps < 0:
        raise ValueError(f"need support ≥ 1 and eps ≥ 0, got {support}, {eps}")
    if eps > 700:  # e^ε overflows; the bound is then κ·|Z| clipped to 1
        return min(1.0, support * kappa)
    e = math.exp(eps)
    return min(1.0, support * kappa * e / (support + e - 1))


def dp_sgd_rdp(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    orders: Sequence[float] | None = None,
) -> tuple[list[float], list[float]]:
    """DP-SGD's RDP curve (subsampled Gaussian, Opacus' analysis): (orders, ε(α)), from
    :func:`privlab.training.dp.rdp_curve`."""
    return rdp_curve(noise_multiplier, sample_rate, steps, orders)


def rero_gamma_dp_sgd(
    kappa: float,
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    orders: Sequence[float] | None = None,
) -> float:
    """γ for DP-SGD: Theorem 2 over the accountant's RDP curve, α optimised over ``orders``."""
    alphas, rdp = dp_sgd_rdp(
        sample_rate=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders
    )
    return rero_gamma_rdp(alphas, rdp, kappa)


def dp_sgd_rero_curve(
    kappa: float,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    noise_multipliers: Sequence[float],
) -> dict[str, list[float]]:
    """For each noise multiplier: ε at ``delta`` (the RDP accountant's conversion,
    :func:`privlab.training.dp.epsilon_from_rdp`) and γ (Thm 2), both from one RDP curve — a
    privacy/ReRo curve without calibrating noise to each ε."""
    eps, gamma = [], []
    for sigma in noise_multipliers:
        alphas, rdp = dp_sgd_rdp(sample_rate=sample_rate, noise_multiplier=sigma, steps=steps)
        eps.append(epsilon_from_rdp(alphas, rdp, delta))
        gamma.append(rero_gamma_rdp(alphas, rdp, kappa))
    return {"noise_multiplier": list(noise_multipliers), "epsilon": eps, "gamma": gamma}


def dp_epsilon_gamma(dp: HeadDP, n: int, epochs: int, kappa: float) -> tuple[float, float]:
    """ε at δ = N^−1.1 and the ReRo γ (Thm 2, α optimised) of DP-SGD heads trained on ``n``
    examples for ``epochs`` (their q, steps and δ from :class:`~privlab.training.heads.HeadDP`),
    both from one RDP curve."""
    curve = dp_sgd_rero_curve(
        kappa,
        sample_rate=dp.sample_rate(n),
        steps=epochs * dp.batches_per_epoch(n),
        delta=dp.delta(n),
        noise_multipliers=[dp.noise_multiplier],
    )
    return curve["epsilon"][0], curve["gamma"][0]


def empirical_kappa(
    pool: torch.Tensor, eta: float, *, candidates: torch.Tensor | None = None
) -> float:
    """κ(η) for a uniform prior over ``pool`` and the per-pixel MSE: the largest fraction of the
    pool any single guess z₀ (from ``candidates``, default the pool and its mean) reaches
    within MSE ≤ η."""
    if len(pool) == 0:
        raise ValueError("the prior's pool is empty")
    guesses = torch.cat([pool, pool.mean(0, keepdim=True)]) if candidates is None else candidates
    mse = pairwise_mse(guesses, pool)
    return float((mse <= eta).double().mean(1).max())
