"""The server's view of a federated update: observation checks and the client's update."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks.gradient_inversion.base import (
    hard_label_loss,
    model_parameters,
    server_target,
    simulated_update,
)
from privlab.federated import GradientObservation, check_observation, client_update
from privlab.registry import ATTACKS, MODELS

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def _batch(digits, n=4):
    return digits.members.x[:n], digits.members.y[:n]


def test_a_matching_observation_passes(digits):
    model = _mlp()
    check_observation(model, client_update(model, *_batch(digits)))


def test_shape_mismatch_names_the_parameter(digits):
    model = _mlp()
    obs = client_update(model, *_batch(digits))
    grads = dict(obs.gradients)
    grads["3.weight"] = torch.zeros(10, 17)
    with pytest.raises(ValueError, match=r"'3\.weight' has shape \(10, 17\).*\(10, 16\)"):
        check_observation(model, obs.with_gradients(grads))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradients_are_rejected_by_name(digits, bad):
    model = _mlp()
    obs = client_update(model, *_batch(digits))
    grads = dict(obs.gradients)
    grads["1.weight"] = grads["1.weight"].clone()
    grads["1.weight"][3, 5] = bad
    with pytest.raises(
        ValueError,
        match=r"NaN or infinite gradient in '1\.weight': rejected, not optimised against",
    ):
        check_observation(model, obs.with_gradients(grads))


def test_a_different_architecture_is_reported(digits):
    cnn = MODELS.build("cnn_small", input_shape=(1, 8, 8), num_classes=10, channels=(4,), fc=8)
    obs = client_update(cnn, *_batch(digits))
    with pytest.raises(ValueError, match="different architecture") as err:
        check_observation(_mlp(), obs)
    assert "missing" in str(err.value) and "'1.weight'" in str(err.value)
    extra = dict(client_update(_mlp(), *_batch(digits)).gradients)
    extra["4.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unknown parameter.*'4\.weight'.*different architecture"):
        check_observation(_mlp(), obs.with_gradients(extra))


@pytest.mark.parametrize("name", ["dlg", "inverting_gradients", "analytic_fc"])
def test_every_attack_checks_the_observation_first(digits, name):
    model = _mlp()
    obs = client_update(model, *_batch(digits, 1))
    grads = {k: v.clone() for k, v in obs.gradients.items()}
    grads["3.bias"][0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite gradient in '3.bias'"):
        ATTACKS.build(name).invert(
            server_target(model, input_shape=(1, 8, 8), num_classes=10), obs.with_gradients(grads)
        )


def test_observation_validates_its_fields():
    with pytest.raises(ValueError, match="learning rate"):
        GradientObservation(gradients={}, batch_size=2, local_steps=3)
    with pytest.raises(ValueError, match="labels_known=True needs labels"):
        GradientObservation(gradients={}, batch_size=2, labels_known=True)
    with pytest.raises(ValueError, match="batch_size"):
        GradientObservation(gradients={}, batch_size=0)


def test_one_step_is_the_autograd_gradient_and_leaves_the_model_alone(digits):
    model = _mlp()
    x, y = _batch(digits)
    before = copy.deepcopy(model.state_dict())
    obs = client_update(model, x, y)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    F.cross_entropy(model(x), y).backward()
    assert obs.batch_size == 4 and obs.local_steps == 1 and obs.lr is None
    for name, p in model.named_parameters():
        assert torch.allclose(obs.gradients[name], p.grad, atol=1e-7, rtol=0), name


def test_one_step_leaves_batch_norm_statistics_and_frozen_weights_alone(digits):
    """The one-step update computes on the model itself only when that cannot change it: a
    training-mode batch-norm forward would move the running statistics, and a frozen weight
    would get no gradient."""
    x, y = _batch(digits)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)
    )
    model[1].weight.requires_grad_(False)
    model.train()
    before = copy.deepcopy(model.state_dict())
    obs = client_update(model, x, y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model[1].weight.requires_grad and model.training
    reference = copy.deepcopy(model)
    reference[1].weight.requires_grad_(True)
    F.cross_entropy(reference(x), y).backward()
    for name, p in reference.named_parameters():
        assert torch.allclose(obs.gradients[name], p.grad, atol=1e-7, rtol=0), name


def test_several_local_steps_are_fedavg_and_leave_the_model_alone(digits):
    model = _mlp()
    x, y = _batch(digits)
    before = copy.deepcopy(model.state_dict())
    one = client_update(model, x, y)
    obs = client_update(model, x, y, local_steps=3, lr=0.5, local_batch=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert obs.local_steps == 3 and obs.lr == 0.5 and obs.local_batch == 2
    # an independent replay with torch's SGD: mini-batches [0, 1], [2, 3], [0, 1]
    replay = copy.deepcopy(model)
    opt = torch.optim.SGD(replay.parameters(), lr=0.5)
    for rows in ([0, 1], [2, 3], [0, 1]):
        opt.zero_grad()
        F.cross_entropy(replay(x[rows]), y[rows]).backward()
        opt.step()
    end = dict(replay.named_parameters())
    for name, p in model.named_parameters():
        expected = (p.detach() - end[name].detach()) / 0.5
        assert torch.allclose(obs.gradients[name], expected, atol=1e-5), name
    diff = max(float((obs.gradients[n] - one.gradients[n]).abs().max()) for n in one.gradients)
    assert diff > 1e-2  # several steps really differ from the one-step gradient


def test_the_attacks_simulation_replays_a_multi_step_update(digits):
    """Fed the true batch, the attacker's unrolled simulation gives back the observation."""
    model = _mlp()
    x, y = _batch(digits)
    obs = client_update(model, x, y, local_steps=3, lr=0.5, local_batch=2)
    simulated = simulated_update(model, model_parameters(model), x, hard_label_loss(y), obs)
    for (name, _), g in zip(model.named_parameters(), simulated, strict=True):
        assert torch.allclose(g.detach(), obs.gradients[name], atol=1e-5), name
