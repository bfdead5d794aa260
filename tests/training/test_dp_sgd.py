"""DP-SGD through Opacus: ε is checked against an independent RDP computation."""

import numpy as np
import pytest
import torch
from scipy import special

from privlab.registry import MODELS, REGIMES
from privlab.training.loop import TrainSpec, train


def _rdp_sampled_gaussian(q: float, sigma: float, alpha: int) -> float:
    """RDP of the Poisson-subsampled Gaussian at integer order α (Mironov et al. 2019, §3.3):
    (1/(α−1)) log Σ_k C(α,k) (1−q)^{α−k} q^k exp((k²−k)/(2σ²))."""
    k = np.arange(alpha + 1)
    log_terms = (
        special.gammaln(alpha + 1)
        - special.gammaln(k + 1)
        - special.gammaln(alpha - k + 1)
        + (alpha - k) * np.log1p(-q)
        + k * np.log(q)
        + (k * k - k) / (2 * sigma**2)
    )
    return float(special.logsumexp(log_terms) / (alpha - 1))


def _epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """Classic RDP → (ε, δ) conversion minimised over integer orders."""
    best = np.inf
    for alpha in range(2, 256):
        rdp = steps * _rdp_sampled_gaussian(q, sigma, alpha)
        eps = rdp + np.log((alpha - 1) / alpha) - (np.log(delta) + np.log(alpha)) / (alpha - 1)
        best = min(best, eps)
    return best


def test_dp_sgd_reports_epsilon_matching_an_independent_accountant(tiny):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[16])
    regime = REGIMES.build("dp_sgd", noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-3)
    result = train(model, tiny.members, regime, TrainSpec(epochs=3, batch_size=30), seed=0)
    s = result.summary
    assert s["mechanism"] == "dp_sgd" and s["noise_multiplier"] == 1.1 and s["delta"] == 1e-3
    q = 30 / len(tiny.members)
    assert s["sample_rate"] == pytest.approx(q)
    independent = _epsilon(q, 1.1, s["steps"], 1e-3)
    # Opacus evaluates fractional orders too, so it can only be tighter, and not by much.
    assert s["epsilon"] <= independent + 1e-6
    assert s["epsilon"] == pytest.approx(independent, rel=0.1)


def test_more_noise_gives_smaller_epsilon(tiny):
    eps = []
    for sigma in (0.8, 2.0):
        model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[8])
        regime = REGIMES.build("dp_sgd", noise_multiplier=sigma)
        eps.append(train(model, tiny.members, regime, TrainSpec(epochs=2)).summary["epsilon"])
    assert eps[1] < eps[0]


def test_target_epsilon_is_met(tiny):
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[8])
    regime = REGIMES.build("dp_sgd", noise_multiplier=None, target_epsilon=2.0)
    summary = train(model, tiny.members, regime, TrainSpec(epochs=2)).summary
    assert summary["epsilon"] <= 2.0 + 1e-2


def test_batch_norm_models_are_refused_with_a_clear_error(tiny):
    model = MODELS.build("wide_resnet", input_shape=tiny.input_shape, num_classes=4)
    with pytest.raises(ValueError, match="BatchNorm|batch_norm"):
        train(model, tiny.members, REGIMES.build("dp_sgd"), TrainSpec(epochs=1))


def test_exactly_one_of_noise_and_target_epsilon():
    with pytest.raises(ValueError, match="exactly one"):
        REGIMES.build("dp_sgd", noise_multiplier=1.0, target_epsilon=3.0)


def test_a_recipes_planned_privacy_is_what_training_with_it_reports(tiny):
    """A given model trained with a DP recipe claims the ε the recipe promises (its audit
    compares with it): the same steps, rate, σ and δ as the trained model's summary."""
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[8])
    regime = REGIMES.build("dp_sgd", noise_multiplier=1.3, delta=1e-4)
    trained = train(model, tiny.members, regime, TrainSpec(epochs=3, batch_size=30)).summary
    planned = REGIMES.build("dp_sgd", noise_multiplier=1.3, delta=1e-4).planned_summary(
        len(tiny.members), batch_size=30, epochs=3
    )
    assert planned == trained
