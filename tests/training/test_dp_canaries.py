"""Gradient canaries audit privlab's DP-SGD: on the step alone (the worst-case adversary who
sees every noisy sum) and inside real ensemble training (the auditor reads the weights). A
correct implementation never proves more than its accountant claims; one with noise ten
times too small, or no clipping, does."""

from __future__ import annotations

import pytest
import torch

from privlab.data.bundle import Split
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training import dp
from privlab.training.dp_canaries import audit_dp_sgd, audit_dp_training, quiet_direction
from privlab.training.loop import TrainSpec

SETTINGS = [(1.0, 0.1, 50), (2.0, 0.1, 50), (1.0, 1.0, 10), (4.0, 0.05, 200)]


def _claim(sigma: float, q: float, steps: int) -> dict:
    privacy = {"noise_multiplier": sigma, "max_grad_norm": 1.0, "sample_rate": q,
               "steps": steps, "delta": 1e-5, "accountant": "rdp"}  # fmt: skip
    return privacy | {"epsilon": dp.epsilon(sigma, q, steps, 1e-5)}


@pytest.mark.parametrize(("sigma", "q", "steps"), SETTINGS)
def test_a_correct_step_never_proves_more_than_its_accountant(sigma, q, steps):
    for seed in (0, 1, 2):
        audit = audit_dp_sgd(_claim(sigma, q, steps), runs=500, seed=seed)
        assert 0 <= audit["epsilon"] <= audit["claimed_epsilon"] and not audit["violated"]


def _noise_ten_times_too_small(monkeypatch):
    add_noise = dp.add_noise
    monkeypatch.setattr(dp, "add_noise", lambda s, std, g: add_noise(s, std / 10, g))


def test_noise_ten_times_too_small_or_no_clipping_is_caught_on_the_step(monkeypatch):
    claim = _claim(2.0, 0.1, 50)  # ε 1.84
    with monkeypatch.context() as m:
        _noise_ten_times_too_small(m)
        assert audit_dp_sgd(claim)["violated"]
    clipped_sum = dp.clipped_sum
    monkeypatch.setattr(dp, "clipped_sum", lambda g, c, **kw: clipped_sum(g, 1e9, **kw))
    assert audit_dp_sgd(claim)["violated"]  # the canary's 10·C passes unclipped


@pytest.fixture(scope="module")
def digits() -> Split:
    return DATASETS.build("digits", seed=0).members.subset(range(200))


def _make(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[32])


def test_the_dirac_canary_sits_where_the_data_never_moves_the_weights(digits):
    model = _make(0)
    direction = quiet_direction(model, digits)
    (name,) = [n for n, d in direction.items() if d.abs().sum() > 0]
    assert float(direction[name].abs().sum()) == 1.0
    loss = torch.nn.functional.cross_entropy(model(digits.x), digits.y)
    grad = dict(
        zip(
            dict(model.named_parameters()),
            torch.autograd.grad(loss, list(model.parameters())),
            strict=True,
        )
    )
    assert float((grad[name] * direction[name]).sum()) == 0.0  # a pixel that is always 0


def test_inside_training_a_correct_dp_sgd_is_consistent_and_too_little_noise_is_caught(
    digits, monkeypatch
):
    regime = REGIMES.build("dp_sgd", noise_multiplier=6.0, max_grad_norm=1.0, delta=1e-5)
    spec = TrainSpec(epochs=5, batch_size=256, optimizer="sgd", lr=0.5, momentum=0.0)
    correct = audit_dp_training(_make, digits, regime, spec, runs=300)
    assert correct["claimed_epsilon"] == pytest.approx(dp.epsilon(6.0, 1.0, 5, 1e-5))
    assert not correct["violated"] and correct["epsilon"] <= correct["claimed_epsilon"]
    _noise_ten_times_too_small(monkeypatch)
    broken = audit_dp_training(_make, digits, regime, spec, runs=300)
    assert broken["violated"] and broken["epsilon"] > broken["claimed_epsilon"]


def test_a_gradient_canary_goes_into_dp_sgd_training_only(digits):
    from privlab.training.ensemble_dp import GradientCanary
    from privlab.training.ensembles import train_ensemble

    canary = GradientCanary(0, {n: torch.zeros_like(p) for n, p in _make(0).named_parameters()})
    spec = TrainSpec(epochs=1, batch_size=64)
    masks = torch.ones(2, len(digits), dtype=torch.bool).numpy()
    with pytest.raises(ValueError, match="vectorised DP-SGD training only"):
        train_ensemble(_make, digits, masks, REGIMES.build("natural"), spec, seeds=[0, 1],
                       gradient_canary=canary)  # fmt: skip
