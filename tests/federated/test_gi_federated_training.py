"""FedAvg under defences: utility on digits, determinism and DP accounting."""

import math

import pytest
import torch
from torch import nn

from privlab.federated.defences import DPSGD, NoDefence, Pruning, SecureAggregation
from privlab.federated.training import dp_accounting, federated_train, shard_indices

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


SETTINGS = {"clients": 10, "rounds": 40, "batch_size": 16, "lr": 1.0, "seed": 0}


def _train(digits, defence=None, **overrides):
    return federated_train(
        _mlp, digits.members, digits.nonmembers, defence=defence, **(SETTINGS | overrides)
    )


@pytest.fixture(scope="module")
def undefended(digits):
    # module fixtures run before conftest's per-test one-thread fixture: set it here too
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(digits)
    finally:
        torch.set_num_threads(before)


def test_fedavg_without_defence_learns_digits(digits, undefended):
    r = undefended
    assert r["final_accuracy"] > 0.85  # ~0.93 in under a second
    assert len(r["accuracy"]) == 40 and r["accuracy"][-1] == r["final_accuracy"]
    assert r["accuracy"][0] < r["final_accuracy"]
    assert r["final_train_loss"] < 0.6 and r["epsilon"] is None
    assert r["defence"] == "none" and r["clients_per_round"] == 10
    assert isinstance(r["model"], nn.Module)


def test_fedavg_is_seeded_and_leaves_the_global_rng_alone(digits, undefended):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = _train(digits)
    assert torch.equal(torch.get_rng_state(), before)
    assert again["accuracy"] == undefended["accuracy"]
    assert _train(digits, seed=1, rounds=3)["accuracy"] != undefended["accuracy"][:3]


def test_secure_aggregation_costs_no_accuracy(digits, undefended):
    r = _train(digits, SecureAggregation(clients=4))
    assert r["accuracy"] == undefended["accuracy"]
    assert r["defence"] == "secure_aggregation" and r["defence_params"]["clients"] == 4


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha:UserWarning")
def test_huge_dp_noise_leaves_the_model_near_chance(digits, undefended):
    r = _train(digits, DPSGD(clip=1.0, noise_multiplier=1000.0))
    assert r["final_accuracy"] < 0.3  # chance is 0.1
    assert undefended["final_accuracy"] - r["final_accuracy"] > 0.5  # the utility loss
    assert 0 < r["epsilon"] < 0.1


def test_moderate_defences_keep_most_of_the_utility(digits, undefended):
    for defence in (Pruning(p=0.9), DPSGD(clip=1.0, noise_multiplier=0.5)):
        r = _train(digits, defence)
        assert undefended["final_accuracy"] - r["final_accuracy"] < 0.2, defence


def test_dp_epsilon_uses_the_round_sampling_rate(digits):
    r = _train(digits, DPSGD(clip=1.0, noise_multiplier=1.0), rounds=5, participation=0.5)
    # 599 examples in 10 shards of 59–60; 5 of 10 clients a round; batches of 16
    q = 5 / 10 * 16 / 59
    delta = 599**-1.1
    assert r["clients_per_round"] == 5
    assert r["sample_rate"] == pytest.approx(q) and r["delta"] == pytest.approx(delta)
    assert r["epsilon"] == pytest.approx(DPSGD(noise_multiplier=1.0).epsilon(5, q, delta))
    assert r["uses_per_round"] == 1.0


def test_dp_accounting_counts_local_steps_within_a_round():
    dp = DPSGD(noise_multiplier=2.0)
    acc = dp_accounting(
        dp,
        shard_sizes=[60, 59, 60],
        clients_per_round=3,
        rounds=50,
        batch_size=16,
        local_steps=4,
        local_batch=8,
        delta=1e-5,
    )
    # 4 steps of 8 over a batch of 16: every example is used twice a round
    assert acc["uses_per_round"] == 2 and acc["sample_rate"] == pytest.approx(16 / 59)
    assert acc["effective_noise_multiplier"] == pytest.approx(2.0 / math.sqrt(2))
    assert acc["epsilon"] == pytest.approx(
        DPSGD(noise_multiplier=2.0 / math.sqrt(2)).epsilon(50, 16 / 59, 1e-5)
    )
    # the same claim audited white-box (rounds at the rate, two noisy uses each): a valid
    # lower bound, under the accountant's ε
    audit = acc["dp_audit"]
    assert audit["uses_per_step"] == 2 and audit["steps"] == 50
    assert 0 <= audit["epsilon"] <= acc["epsilon"] and not audit["violated"]
    # a shard smaller than the batch is used whole every round (q = 1)
    whole = dp_accounting(
        dp,
        shard_sizes=[8, 9],
        clients_per_round=2,
        rounds=1,
        batch_size=16,
        local_steps=1,
        local_batch=None,
        delta=1e-5,
    )
    assert whole["sample_rate"] == 1.0


def test_the_audit_of_a_repeated_dp_claim_runs_once_with_the_same_result(monkeypatch):
    from privlab.federated import training

    calls: list[dict] = []
    audit = training.audit_dp_sgd

    def counted(claim, **kwargs):
        calls.append(claim)
        return audit(claim, **kwargs)

    monkeypatch.setattr(training, "audit_dp_sgd", counted)
    training._audit_memo.cache_clear()
    setting = dict(shard_sizes=[40, 40], clients_per_round=2, rounds=30, batch_size=4,
                   local_steps=1, local_batch=None, delta=1e-4)  # fmt: skip
    first, again = (dp_accounting(DPSGD(noise_multiplier=1.0), **setting) for _ in range(2))
    other = dp_accounting(DPSGD(noise_multiplier=3.0), **setting)
    training._audit_memo.cache_clear()
    fresh = dp_accounting(DPSGD(noise_multiplier=1.0), **setting)
    assert len(calls) == 3  # σ = 1 once, σ = 3, σ = 1 after the cache was cleared
    assert first == again == fresh and first["dp_audit"] is not again["dp_audit"]
    assert other["dp_audit"]["epsilon"] != first["dp_audit"]["epsilon"]


def test_local_steps_run_and_shards_partition_the_data(digits):
    r = _train(digits, NoDefence(), rounds=5, local_steps=3, local_batch=8, lr=0.5)
    assert len(r["accuracy"]) == 5 and r["local_steps"] == 3
    shards = shard_indices(599, 10, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(shards).tolist()) == list(range(599))
    assert {len(s) for s in shards} == {59, 60}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rounds": 0}, "rounds"),
        ({"clients": 0}, "clients"),
        ({"clients": 10_000}, "clients"),
        ({"participation": 0.0}, "participation"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_training_settings_are_refused(digits, overrides, field):
    with pytest.raises(ValueError, match=field):
        _train(digits, **overrides)
