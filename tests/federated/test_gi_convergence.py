"""FedAvg run until the training loss converges (Liu et al. measure utility by the final
training loss, which presumes converged training): the patience rule and federated_train."""

import math

import pytest
from torch import nn

from privlab.federated.convergence import Convergence
from privlab.federated.defences import Pruning
from privlab.federated.training import federated_train

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
