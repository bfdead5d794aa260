"""DP clients' FedAvg at a tuned server learning rate: every factor of the grid trains on the
population (never on the members, so never on an attacked batch), the least final training
loss picks the rate, and the run on the members uses it and records it."""

import math

import pytest
import torch

from privlab.config import ConfigError, load_config_dict
from privlab.registry import DATASETS
from privlab.run.progress import SilentProgress
from privlab.run.store import StateDir
from privlab.studies.gradient_inversion import run as gi
from privlab.studies.gradient_inversion import task as gi_task
from privlab.studies.gradient_inversion.lr_tuning import candidate_rates, choose_rate
from privlab.studies.gradient_inversion.report import points_table

TINY = {
    "data": "digits",
    "model": {"name": "mlp", "params": {"hidden": [8]}},
    "clients": [{"batch_size": 4, "lr": 0.1}],
    "batches": 1,
    "examples": 0,
    "attacks": [
        {"name": "inverting_gradients", "label": "IG", "params": {"iterations": 2, "restarts": 1}}
    ],
    "defences": [
        "none",
        {"name": "pruning", "sweep": {"p": [0.9]}},
        # heavy clipping: the clipped update is far smaller than the gradient
        {"name": "dp", "params": {"clip": 0.05}, "sweep": {"noise_multiplier": [0.0]}},
    ],
    "utility": {
        "clients": 2,
        "rounds": 20,
        "noise_seeds": 0,
        "lr_tuning": {"factors": [1, 4, 16], "defences": ["dp"]},
    },
}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tiny study run with every FedAvg call's training data and server rate recorded."""
    calls = []
    real = gi_task.federated_train

    def spy(model_fn, train, test, **kwargs):
        calls.append((kwargs["defence"].name, train, kwargs["server_lr"]))
        return real(model_fn, train, test, **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tuned")
    cfg = load_config_dict({"name": "tiny", "gradient_inversion": TINY}).gradient_inversion
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(gi_task, "federated_train", spy)
            run = gi.run_gradient_inversion_study(
                cfg, 0, state=StateDir(out), cache=out / "cache", progress=SilentProgress()
            )
    finally:
        torch.set_num_threads(before)
    return run, calls


def test_dp_runs_at_the_rate_tuned_on_the_population(tuned):
    run, calls = tuned
    points = {p["label"]: p for p in run["settings"][0]["points"]}
    util = points["dp noise_multiplier=0.0"]["utility"]
    record = util["lr_tuning"]
    assert record["tuned"] == "server_lr" and record["data"] == "population"
    assert record["base_server_lr"] == pytest.approx(0.1)
    losses = {c["factor"]: c["train_loss"] for c in record["candidates"]}
    assert list(losses) == [1.0, 4.0, 16.0]
    assert record["factor"] == min(losses, key=lambda f: losses[f])
    # clipping to 0.05 shrinks the update: a larger step trains better than the base rate
    assert record["factor"] > 1 and losses[record["factor"]] < losses[1.0]
    assert util["server_lr"] == pytest.approx(0.1 * record["factor"])
    # the other defences keep the base rate and say so
    assert points["pruning p=0.9"]["utility"]["lr_tuning"] is None
    assert points["pruning p=0.9"]["utility"]["server_lr"] == pytest.approx(0.1)
    _, rows = points_table({"gradient_inversion": run})
    assert [row[-1] for row in rows] == ["—", "—", f"×{record['factor']:g}"]


def test_tuning_never_trains_on_the_members(tuned):
    run, calls = tuned
    bundle = DATASETS.build("digits", seed=0)
    dp_calls = [(train, rate) for name, train, rate in calls if name == "dp"]
    *tuning, final = dp_calls
    assert [rate for _, rate in tuning] == pytest.approx([0.1, 0.4, 1.6])
    for train, _ in tuning:
        assert torch.equal(train.x, bundle.population.x)  # public data, disjoint from members
    assert torch.equal(final[0].x, bundle.members.x)  # the reported run: the clients' data
    # the attacked batch is members' data, and none of its images is in the tuning data
    rows = run["settings"][0]["batch_rows"][0]
    attacked = bundle.members.x[rows].flatten(1)
    pool = bundle.population.x.flatten(1)
    assert not any(bool((pool == img).all(1).any()) for img in attacked)
    # the undefended and pruned runs are not tuned: one run each, on the members
    assert [name for name, _, _ in calls].count("pruning") == 1


def test_the_choice_skips_diverged_runs_and_keeps_the_base_if_all_diverge():
    assert candidate_rates(0.1, [0.5, 2]) == [(0.5, 0.05), (2.0, 0.2)]
    picked = choose_rate([(1.0, 0.1, 0.9), (4.0, 0.4, 0.5), (8.0, 0.8, math.nan)], 0.1)
    assert picked["factor"] == 4.0 and picked["server_lr"] == 0.4
    assert picked["candidates"][2]["train_loss"] is None  # NaN is recorded as missing
    kept = choose_rate([(2.0, 0.2, math.inf), (4.0, 0.4, math.nan)], 0.1)
    assert kept["factor"] == 1.0 and kept["server_lr"] == 0.1
    with pytest.raises(ValueError, match="positive"):
        candidate_rates(0.0, [1])


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"factors": [1, -2]}, "factors must be positive"),
        ({"defences": ["none"]}, "undefended baseline keeps the base rate"),
        ({"defences": ["dpp"]}, "unknown defence 'dpp'"),
        ({"grid": [1]}, "grid"),
    ],
)
def test_bad_tuning_configs_are_refused(tuning, message):
    data = TINY | {"utility": TINY["utility"] | {"lr_tuning": tuning}}
    with pytest.raises(ConfigError, match=message):
        load_config_dict({"name": "tiny", "gradient_inversion": data})
