"""FedAvg run until the training loss converges (Liu et al. measure utility by the final
training loss, which presumes converged training): the patience rule and federated_train."""

import math

import pytest
import torch
from torch import nn

from privlab.federated.convergence import Convergence
from privlab.federated.defences import Pruning
from privlab.federated.training import evaluate, federated_train, monitor_sample

pytestmark = pytest.mark.usefixtures("one_thread")


def _feed(rule, losses):
    """Rounds run before the monitor says stop (None: it never did)."""
    monitor = rule.monitor()
    for r, loss in enumerate(losses, start=1):
        if monitor.update(loss):
            return r, monitor
    return None, monitor


def test_patience_stops_after_rounds_without_improvement():
    rule = Convergence(max_rounds=100, patience=3, tolerance=0.01)
    stopped, m = _feed(rule, [1.0, 0.8, 0.6, 0.595, 0.6, 0.598, 0.3])
    # rounds 4–6 improve by less than the tolerance on 0.6 (round 3): stop after round 6
    assert stopped == 6 and m.converged and m.last_improved == 3
    summary = m.summary()
    assert summary["converged"] is True and summary["train_loss_curve"] == [
        1.0,
        0.8,
        0.6,
        0.595,
        0.6,
        0.598,
    ]
    assert summary["until"] == "converged" and summary["patience"] == 3


def test_small_steps_that_add_up_count_as_improvement():
    rule = Convergence(max_rounds=100, patience=3, tolerance=0.01)
    # 0.004 a round: no single round beats the tolerance, but every third one drifts past it
    losses = [1.0 - 0.004 * k for k in range(30)]
    stopped, m = _feed(rule, losses)
    assert stopped is None and not m.converged


def test_the_cap_stops_a_run_that_never_converges_and_nan_never_improves():
    rule = Convergence(max_rounds=5, patience=10, tolerance=0.0)
    stopped, m = _feed(rule, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert stopped == 5 and not m.converged
    stopped, m = _feed(Convergence(patience=2), [1.0, math.nan, math.inf])
    assert stopped == 3 and m.converged and m.last_improved == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_rounds": 0}, "max_rounds"), ({"patience": 0}, "patience"), ({"tolerance": -1}, "tol")],
)
def test_bad_rules_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Convergence(**kwargs)


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def test_fedavg_runs_until_the_training_loss_converges(digits):
    rule = Convergence(max_rounds=400, patience=5, tolerance=0.02)
    r = federated_train(
        _mlp, digits.members, digits.nonmembers, clients=4, rounds=rule, batch_size=8, lr=0.5
    )
    conv = r["convergence"]
    assert conv["converged"] and r["rounds"] < 400
    assert r["rounds"] == len(r["accuracy"]) == len(conv["train_loss_curve"])
    assert r["rounds"] - conv["last_improved_round"] == 5
    # the curve is the training split's loss after each round: its last value is the final one
    assert conv["train_loss_curve"][-1] == pytest.approx(r["final_train_loss"])
    assert conv["train_loss_curve"][-1] < conv["train_loss_curve"][0]
    # a fixed run of as many rounds is the same run (the loss evaluation draws no randomness)
    fixed = federated_train(
        _mlp, digits.members, digits.nonmembers, clients=4, rounds=r["rounds"], batch_size=8, lr=0.5
    )
    assert fixed["convergence"] is None and fixed["accuracy"] == r["accuracy"]
    assert fixed["final_train_loss"] == r["final_train_loss"]


def test_fixed_rounds_keep_their_meaning(digits):
    r = federated_train(
        _mlp,
        digits.members,
        digits.nonmembers,
        clients=4,
        rounds=3,
        batch_size=8,
        defence=Pruning(p=0.9),
    )
    assert r["rounds"] == 3 and len(r["accuracy"]) == 3 and r["convergence"] is None


def test_the_curves_are_measured_on_a_fixed_sample_and_leave_the_training_alone(digits):
    """On splits larger than ``monitor_size`` the per-round curves use a fixed seeded sample
    (a round costs the same on 60,000 examples as on 2,000); the clients' training, and so the
    final model and its whole-split utility, is the same run."""
    common = {"clients": 4, "batch_size": 8, "lr": 0.5, "seed": 3}
    whole = federated_train(_mlp, digits.members, digits.nonmembers, rounds=30, **common)
    sampled = federated_train(
        _mlp, digits.members, digits.nonmembers, rounds=30, monitor_size=100, **common
    )
    assert whole["monitored_examples"] == {"train": 599, "test": 599}
    assert sampled["monitored_examples"] == {"train": 100, "test": 100}
    for a, b in zip(whole["model"].parameters(), sampled["model"].parameters(), strict=True):
        assert torch.equal(a, b)
    assert sampled["final_train_loss"] == whole["final_train_loss"]
    # the last curve point is the final model on the sample, not on the whole split
    sample = monitor_sample(digits.nonmembers, 100, 3 + 1)
    assert sampled["accuracy"][-1] == evaluate(sampled["model"], sample)[1]
    assert sampled["accuracy"] != whole["accuracy"]
    # the convergence rule watches the training sample
    rule = Convergence(max_rounds=30, patience=30, tolerance=0.0)
    watched = federated_train(
        _mlp, digits.members, digits.nonmembers, rounds=rule, monitor_size=100, **common
    )
    train_sample = monitor_sample(digits.members, 100, 3)
    curve = watched["convergence"]["train_loss_curve"]
    assert curve[-1] == pytest.approx(evaluate(watched["model"], train_sample)[0])


def test_the_monitoring_sample_is_fixed_by_its_seed(digits):
    a, b = (monitor_sample(digits.members, 50, 7) for _ in range(2))
    assert torch.equal(a.x, b.x) and len(a) == 50
    assert not torch.equal(a.x, monitor_sample(digits.members, 50, 8).x)
    assert monitor_sample(digits.members, 10_000, 7) is digits.members
    with pytest.raises(ValueError, match="monitor_size"):
        monitor_sample(digits.members, 0, 7)
