"""PixelDP's noise layer (Lecuyer et al.; Song et al. App. E): calibration, sensitivity bounds,
noise in training, Monte-Carlo averaging at prediction, rebuilds, and the leak it lowers."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm as gaussian
from torch import nn

from privlab.metrics.membership import auc
from privlab.registry import ATTACKS, MODELS, REGIMES
from privlab.training.loop import TrainSpec, train
from privlab.training.regimes.noise_layer import (
    NoiseLayer,
    SensitivityBounded,
    layer_sensitivity,
    noise_layer_of,
    noise_scale,
)
from trained import small_target


def _mlp(bundle, seed=0, hidden=(32,)):
    torch.manual_seed(seed)
    return MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=list(hidden)
    )


def _analytic_gaussian_delta(sigma, eps, sensitivity=1.0):
    """δ(ε) of the Gaussian mechanism, exactly (Balle & Wang 2018, Theorem 8)."""
    a, b = sensitivity / (2 * sigma), eps * sigma / sensitivity
    return gaussian.cdf(a - b) - math.exp(eps) * gaussian.cdf(-a - b)


@pytest.mark.parametrize(("radius", "eps", "delta"), [(0.1, 1.0, 0.05), (0.5, 0.3, 1e-5)])
def test_sigma_is_the_gaussian_mechanisms_calibration(radius, eps, delta):
    regime = REGIMES.build("noise_layer", radius=radius, dp_eps=eps, dp_delta=delta)
    # Dwork & Roth, Theorem A.1: σ = Δ·sqrt(2 ln(1.25/δ))/ε for Δ = L (sensitivity 1 per unit)
    expected = np.sqrt(2.0 * np.log(1.25 / delta)) * radius / eps
    assert regime.sigma == pytest.approx(expected, rel=1e-12)
    assert noise_scale(radius, eps, delta, "l2", sensitivity=3.0) == pytest.approx(3 * expected)
    # the classical calibration is sufficient: the exact δ at that σ is no larger
    assert 0 < _analytic_gaussian_delta(regime.sigma, eps, sensitivity=radius) <= delta
    assert regime.summary()["noise_layer"]["scale"] == pytest.approx(expected)


def test_pixeldp_cifar_setting_and_the_laplace_mechanism():
    # PixelDP's CIFAR-10 defaults (L = 0.1, ε = 1, δ = 0.05): σ ≈ 0.2537
    assert REGIMES.build("noise_layer").sigma == pytest.approx(0.253727, abs=1e-6)
    laplace = REGIMES.build("noise_layer", norm="l1", radius=0.2, dp_eps=0.5)
    assert laplace.sigma == pytest.approx(0.2 / 0.5)  # b = Δ·L/ε
    assert laplace.budget() == (None, "linf")  # an L1 certificate: reported, not a budget
    assert laplace.summary()["noise_layer"]["mechanism"] == "laplace"
    assert REGIMES.build("noise_layer", radius=0.3).budget() == (0.3, "l2")
    with pytest.raises(ValueError, match="dp_eps"):
        REGIMES.build("noise_layer", dp_eps=2.0)  # the Gaussian calibration needs ε ≤ 1


def _operator_norm(module, input_shape, p):
    """The exact p → p operator norm of a linear layer, from its full Jacobian matrix."""
    x = torch.zeros(1, *input_shape)
    jac = torch.autograd.functional.jacobian(lambda v: module(v).flatten(), x).reshape(
        -1, x.numel()
    )
    j = jac.double().numpy()
    return np.linalg.norm(j, 2) if p == 2 else np.abs(j).sum(0).max()


@pytest.mark.parametrize("stride", [1, 2])
def test_sensitivity_bounds_the_layers_operator_norm(stride):
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=1)
    with torch.no_grad():
        exact = _operator_norm(linear, (12,), 2)
        assert float(layer_sensitivity(linear, "l2")) == pytest.approx(exact, rel=1e-5)
        assert float(layer_sensitivity(linear, "l1")) == pytest.approx(
            _operator_norm(linear, (12,), 1), rel=1e-5
        )
        for p, norm in ((2, "l2"), (1, "l1")):
            assert float(layer_sensitivity(conv, norm)) >= _operator_norm(conv, (2, 6, 6), p) - 1e-6
        big = nn.Linear(12, 7)
        big.weight.mul_(50.0)  # far above sensitivity 1: the bounded layer rescales it
        bounded = SensitivityBounded(big, "l2")
        assert _operator_norm(bounded, (12,), 2) <= 1 + 1e-5


def _adapted(bundle, **params):
    regime = REGIMES.build("noise_layer", **params)
    return regime, regime.adapt_model(_mlp(bundle))


def test_noise_is_on_in_training_and_averaged_at_prediction(tiny):
    regime, model = _adapted(tiny, radius=0.5, draws=16, noise_seed=7)
    x = tiny.members.x[:20]
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # a fresh draw every call
        model.eval()
        out = model(x)
        assert torch.equal(out, model(x))  # fixed draws: the same scores every call
        assert torch.allclose(model(x[:5]), out[:5], atol=1e-6)  # whatever the batch
        assert torch.allclose(out.exp().sum(1), torch.ones(len(x)), atol=1e-5)
        flatten, bounded, noise = model
        h = bounded(flatten(x))
        noiseless = torch.log_softmax(noise.rest(h), dim=1)
        assert (out - noiseless).abs().max() > 1e-3  # the noise changes the prediction
        # the mean softmax over the seeded draws, written out one draw at a time
        z = torch.randn((16, *h.shape[1:]), generator=torch.Generator().manual_seed(7))
        mean = torch.stack([torch.softmax(noise.rest(h + regime.sigma * zk), 1) for zk in z]).mean(
            0
        )
        assert torch.allclose(out, mean.log(), atol=1e-5)


def test_noise_goes_after_the_first_layer_or_on_the_input(tiny):
    _, model = _adapted(tiny)
    assert isinstance(model[1], SensitivityBounded) and isinstance(model[2], NoiseLayer)
    _, on_input = _adapted(tiny, position="input", norm="l1")
    assert isinstance(on_input[0], NoiseLayer) and on_input[0].norm == "l1"
    with torch.no_grad():
        assert on_input.eval()(tiny.members.x[:4]).shape == (4, tiny.num_classes)
    with pytest.raises(TypeError, match="position: input"):
        REGIMES.build("noise_layer").adapt_model(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))


def test_adapt_model_is_idempotent_and_cached_weights_load(tiny):
    regime = REGIMES.build("noise_layer", draws=8)
    spec = TrainSpec(epochs=2, batch_size=32)
    trained = train(_mlp(tiny), tiny.members, regime, spec, seed=0).model
    assert regime.adapt_model(trained) is trained
    assert sum(isinstance(m, NoiseLayer) for m in trained.modules()) == 1
    rebuilt = regime.adapt_model(regime.adapt_model(_mlp(tiny, seed=5)))  # how the cache loads
    rebuilt.load_state_dict(trained.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(tiny.nonmembers.x), trained(tiny.nonmembers.x))
    layer = noise_layer_of(rebuilt)
    assert layer is not None and layer.scale == regime.sigma and layer.draws == 8


def _loss_attack_auc(model, bundle):
    target = small_target(model, bundle)
    attack = ATTACKS.build("loss_threshold")
    s_in = attack.score(target, bundle.members.x, bundle.members.y)
    s_out = attack.score(target, bundle.nonmembers.x, bundle.nonmembers.y)
    again = attack.score(target, bundle.members.x, bundle.members.y)
    assert np.array_equal(s_in, again)  # the defended scores are reproducible
    return auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])


def test_a_strong_noise_layer_weakens_the_loss_attack(tiny):
    """Heavy noise after the first layer (σ ≈ 1.27) keeps a useful model but leaks less than
    the leaky natural one. (At PixelDP's small budget Song et al. App. E saw *more* leakage.)"""
    spec = TrainSpec(epochs=30, batch_size=16)
    natural = train(_mlp(tiny, hidden=(128,)), tiny.members, REGIMES.build("natural"), spec).model
    regime = REGIMES.build("noise_layer", radius=0.5)
    noisy = train(_mlp(tiny, hidden=(128,)), tiny.members, regime, spec).model
    with torch.no_grad():
        acc = (noisy(tiny.nonmembers.x).argmax(1) == tiny.nonmembers.y).float().mean()
    assert acc > 0.6  # still a classifier, not noise
    leak_natural, leak_noisy = _loss_attack_auc(natural, tiny), _loss_attack_auc(noisy, tiny)
    assert leak_natural > 0.65
    assert leak_noisy < leak_natural - 0.04
