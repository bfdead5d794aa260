"""Contract tests over every registered membership attack, plus strength checks."""

import numpy as np
import pytest
import torch

from privlab.metrics.membership import auc
from privlab.registry import ATTACKS, MODELS, REGIMES
from privlab.threat_model import (
    Access,
    AccessDenied,
    Knowledge,
    Target,
    TargetInfo,
)
from privlab.training.loop import TrainSpec, train
from trained import small_target

MEMBERSHIP = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "membership"]
#: attacks that need more than the predicted label (a labels-only target refuses them)
BEYOND_LABELS = [n for n in MEMBERSHIP if ATTACKS.get(n).requires & ~Access.LABELS]
#: the gap attack's AUC is ½ + ½ (train − test accuracy): 0.55 on the leaky fixture
LEAKY_AUC = {"gap": 0.54}

FAST = {
    "adversarial_confidence": {"steps": 3},
    "inference_network": {"steps": 3, "epochs": 50},
    "shokri": {"epochs": 50},
}


def _scores(name, target, knowledge, bundle, seed=0, **params):
    attack = ATTACKS.build(name, **{**FAST.get(name, {}), **params})
    torch.manual_seed(seed)
    attack.fit(knowledge)
    s_in = attack.score(target, bundle.members.x, bundle.members.y)
    s_out = attack.score(target, bundle.nonmembers.x, bundle.nonmembers.y)
    return s_in, s_out


@pytest.mark.parametrize("name", MEMBERSHIP)
def test_attack_scores_one_finite_float_per_example(name, overfit, tiny):
    target, knowledge = overfit
    s_in, s_out = _scores(name, target, knowledge, tiny)
    assert s_in.shape == (len(tiny.members),) and s_out.shape == (len(tiny.nonmembers),)
    assert s_in.dtype == np.float64 and np.isfinite(np.r_[s_in, s_out]).all()


@pytest.mark.parametrize("name", MEMBERSHIP)
def test_attack_beats_chance_on_a_leaky_model(name, overfit, tiny):
    target, knowledge = overfit
    s_in, s_out = _scores(name, target, knowledge, tiny)
    labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    assert auc(labels, np.r_[s_in, s_out]) > LEAKY_AUC.get(name, 0.6)


@pytest.mark.parametrize("name", MEMBERSHIP)
def test_attack_is_deterministic_under_a_seed(name, overfit, tiny):
    target, knowledge = overfit
    a = _scores(name, target, knowledge, tiny, seed=5)
    b = _scores(name, target, knowledge, tiny, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("name", BEYOND_LABELS)
def test_attack_refuses_access_it_was_not_granted(name, overfit, tiny):
    model = overfit[0]._model
    label_only = small_target(model, tiny, Access.LABELS)
    attack = ATTACKS.build(name, **FAST.get(name, {}))
    with pytest.raises(AccessDenied, match="needs access"):
        attack.score(label_only, tiny.members.x[:4], tiny.members.y[:4])


@pytest.mark.parametrize("name", ["adversarial_confidence", "inference_network"])
def test_white_box_attacks_need_input_gradients(name, overfit, tiny):
    probs_only = small_target(overfit[0]._model, tiny, Access.PROBS)
    with pytest.raises(AccessDenied, match="input_gradients"):
        ATTACKS.build(name, **FAST.get(name, {})).score(
            probs_only, tiny.members.x[:4], tiny.members.y[:4]
        )


def test_inference_network_needs_reference_data():
    with pytest.raises(ValueError, match="reference"):
        ATTACKS.build("inference_network").fit(Knowledge())


def test_random_scores_and_an_untrained_model_give_chance(tiny):
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(5000), np.zeros(5000)]
    assert abs(auc(labels, rng.random(10_000)) - 0.5) < 0.02
    torch.manual_seed(0)
    fresh = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[16])
    s_in, s_out = _scores("loss_threshold", small_target(fresh, tiny), Knowledge(), tiny)
    assert abs(auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out]) - 0.5) < 0.1


def test_loss_attack_loses_to_a_strong_dp_defence(tiny):
    """Heavy DP noise (ε ≪ 1) leaves the loss attack at chance where natural training leaks."""
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[256])
    dp = train(
        model,
        tiny.members,
        REGIMES.build("dp_sgd", noise_multiplier=8.0),
        TrainSpec(epochs=30, batch_size=16, lr=1e-3),
        seed=0,
    )
    assert dp.summary["epsilon"] < 1.0
    s_in, s_out = _scores("loss_threshold", small_target(dp.model, tiny), Knowledge(), tiny)
    assert (
        abs(auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out]) - 0.5) < 0.08
    )


def test_adversarial_confidence_uses_the_targets_budget_or_its_own(overfit, tiny):
    model = overfit[0]._model
    no_budget = Target(
        model, TargetInfo("t", 4, tiny.input_shape, eps=None), Access.PROBS | Access.INPUT_GRADIENTS
    )
    with pytest.raises(ValueError, match="no perturbation budget"):
        ATTACKS.build("adversarial_confidence").score(
            no_budget, tiny.members.x[:2], tiny.members.y[:2]
        )
    scores = ATTACKS.build("adversarial_confidence", eps=0.0).score(
        no_budget, tiny.members.x[:8], tiny.members.y[:8]
    )
    benign = ATTACKS.build("confidence").score(no_budget, tiny.members.x[:8], tiny.members.y[:8])
    assert np.allclose(scores, benign, atol=1e-6)  # ε = 0 reduces I_A to I_B
