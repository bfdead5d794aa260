"""The study's FedAvg utility with ``until: converged``: the undefended run trains until its
training loss converges, and every other run of the client setting (defences, noise seeds)
trains as many rounds, which the report records; ``until: rounds`` keeps the old meaning."""

import pytest
import torch

from privlab.config import ConfigError, load_config_dict
from privlab.federated.convergence import Convergence
from privlab.run.progress import SilentProgress
from privlab.run.store import StateDir
from privlab.studies.gradient_inversion import run as gi
from privlab.studies.gradient_inversion import task as gi_task
from privlab.studies.gradient_inversion.config import FederatedUtilityConfig
from privlab.studies.gradient_inversion.report import training_lines

TINY = {
    "data": "digits",
    "model": {"name": "mlp", "params": {"hidden": [8]}},
    "clients": [{"batch_size": 4, "lr": 0.5}],
    "batches": 1,
    "examples": 0,
    "attacks": [
        {"name": "inverting_gradients", "label": "IG", "params": {"iterations": 2, "restarts": 1}}
    ],
    "defences": ["none", {"name": "pruning", "sweep": {"p": [0.9]}}],
    "utility": {
        "clients": 2,
        "until": "converged",
        "max_rounds": 300,
        "patience": 3,
        "tolerance": 0.05,
        "noise_seeds": 1,
    },
}


def _section(**utility):
    return load_config_dict(
        {"name": "tiny", "gradient_inversion": TINY | {"utility": TINY["utility"] | utility}}
    ).gradient_inversion


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    """One tiny study run, with every FedAvg call's length recorded."""
    calls = []
    real = gi_task.federated_train

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs["defence"].name, kwargs["rounds"], result["rounds"]))
        return result

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("converged")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(gi_task, "federated_train", spy)
            run = gi.run_gradient_inversion_study(
                _section(), 0, state=StateDir(out), cache=out / "cache", progress=SilentProgress()
            )
    finally:
        torch.set_num_threads(before)
    return run, calls


def test_the_undefended_run_converges_and_the_rest_train_as_long(converged):
    run, calls = converged
    (setting,) = run["settings"]
    base = setting["baseline_utility"]
    conv = base["convergence"]
    assert conv["converged"] and conv["patience"] == 3 and conv["tolerance"] == 0.05
    assert 3 < base["rounds"] < 300 and base["rounds"] == len(conv["train_loss_curve"])
    # the undefended run was given the rule; the noise seed and the defence its length
    (first, *rest) = calls
    assert first[0] == "none" and isinstance(first[1], Convergence) and first[2] == base["rounds"]
    assert [(name, asked) for name, asked, _ in rest] == [
        ("none", base["rounds"]),  # the noise seed
        ("pruning", base["rounds"]),
    ]
    points = {p["label"]: p for p in setting["points"]}
    assert points["pruning p=0.9"]["utility"]["rounds"] == base["rounds"]
    assert points["none"]["utility"]["rounds"] == base["rounds"]


def test_the_report_says_how_long_fedavg_ran(converged):
    run, _ = converged
    (line,) = training_lines({"gradient_inversion": run})
    rounds = run["settings"][0]["baseline_utility"]["rounds"]
    assert f"FedAvg ran {rounds} rounds (the undefended run converged" in line
    # an old report without the length says nothing rather than failing
    old = {"settings": [{"client": {"label": "B=4"}, "baseline_utility": {"final_accuracy": 1}}]}
    assert training_lines({"gradient_inversion": old}) == []


def test_fixed_rounds_stay_the_default_and_explicit():
    u = FederatedUtilityConfig()
    assert u.until == "rounds" and u.stop() == 50
    # the cache key of a fixed-rounds config is what it was before `until` existed
    assert set(u.cache_key()) == {"clients", "rounds", "participation", "server_lr"}
    rule = _section().utility.stop()
    assert rule == Convergence(max_rounds=300, patience=3, tolerance=0.05)


@pytest.mark.parametrize(
    ("utility", "message"),
    [
        ({"rounds": 100}, "until: converged does not use rounds"),
        ({"until": "rounds", "rounds": 10}, "until: rounds does not use max_rounds, patience"),
        ({"until": "forever"}, "until"),
        ({"patience": 0}, "patience"),
    ],
)
def test_lengths_that_do_not_apply_are_refused(utility, message):
    data = TINY | {"utility": TINY["utility"] | utility}
    with pytest.raises(ConfigError, match=message):
        load_config_dict({"name": "tiny", "gradient_inversion": data})
