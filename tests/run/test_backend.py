"""The execution backends: the same results locally and on Ray, a task's own error re-raised
as itself, a task whose worker dies run again to the same result, and the clear errors."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from privlab.run.backend import (
    BackendError,
    LocalBackend,
    RayBackend,
    Resources,
    make_backend,
    task_device,
)
from ray_support import GI_SWEEP, require_ray, untimed


def _noisy_sum(seed: int, *, table: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(table.shape[1], 8, generator=gen)
    return (table @ w).tanh().sum(0)


def _fails_on_three(i: int) -> int:
    if i == 3:
        raise ValueError(f"item {i} is bad input")
    return i


def _dies_once(i: int, *, marker: str) -> int:
    """Kills its own worker process the first time item 1 runs (a crashed node's worker)."""
    path = Path(marker) / f"died-{i}"
    if i == 1 and not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return i * i


def test_local_map_calls_each_item_with_the_shared_inputs_alike_in_threads_or_not():
    table = torch.randn(64, 32)
    one = list(LocalBackend(workers=1).map(_noisy_sum, [0, 1, 2], shared={"table": table}))
    assert [i for i, _ in one] == [0, 1, 2]  # sequential: in order
    assert torch.equal(one[2][1], _noisy_sum(2, table=table))
    threads = torch.get_num_threads()
    two = dict(LocalBackend(workers=2).map(_noisy_sum, [0, 1, 2], shared={"table": table}))
    assert all(torch.equal(two[i], r) for i, r in one)
    assert torch.get_num_threads() == threads  # restored after the threads' one each


def test_unknown_backends_and_addresses_without_ray_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        make_backend("spark")
    with pytest.raises(ValueError, match="needs backend 'ray'"):
        make_backend("local", address="10.0.0.1:6379")
    assert task_device(Resources(gpus=0)).type == "cpu"


@pytest.fixture(scope="module")
def ray_backend():
    ray = require_ray()
    # this module's task functions travel by value: workers cannot import a test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield RayBackend()
    finally:
        ray.shutdown()


def test_ray_gives_the_local_results_bit_for_bit(ray_backend):
    table = torch.randn(64, 32)
    local = dict(LocalBackend().map(_noisy_sum, list(range(6)), shared={"table": table}))
    remote = dict(ray_backend.map(_noisy_sum, list(range(6)), shared={"table": table}))
    assert sorted(remote) == list(range(6))
    assert all(torch.equal(local[i], remote[i]) for i in range(6))


def test_a_tasks_own_error_is_raised_as_itself_not_as_a_ray_traceback(ray_backend):
    with pytest.raises(ValueError, match="^item 3 is bad input$"):
        dict(ray_backend.map(_fails_on_three, list(range(5))))


def test_a_task_whose_worker_dies_runs_again_to_the_same_result(ray_backend, tmp_path):
    out = dict(ray_backend.map(_dies_once, [0, 1, 2], shared={"marker": str(tmp_path)}))
    assert out == {0: 0, 1: 1, 2: 4}
    assert (tmp_path / "died-1").exists()  # the first attempt did die


def test_a_worker_that_dies_more_often_than_retries_allow_is_a_backend_error(ray_backend, tmp_path):
    no_retries = RayBackend(max_retries=0)  # the module's cluster, retries off
    with pytest.raises(BackendError, match="worker died 1 times"):
        dict(no_retries.map(_dies_once, [1], shared={"marker": str(tmp_path)}))


def test_asking_for_a_gpu_on_a_cluster_without_one_runs_on_cpu(ray_backend):
    table = torch.randn(4, 3)
    out = dict(
        ray_backend.map(_noisy_sum, [0], shared={"table": table}, resources=Resources(gpus=0.25))
    )
    assert torch.equal(out[0], _noisy_sum(0, table=table))


def test_the_header_chooses_the_backend_and_ray_missing_is_one_clear_error(tmp_path, monkeypatch):
    from privlab.config.schema import ConfigError, load_config_dict
    from privlab.run.runner import run_experiment

    base = {"name": "b", "reconstruction": {"informed_adversary": {"dataset": "digits"}}}
    assert load_config_dict(base).backend == "local"
    config = load_config_dict({**base, "backend": "ray"})
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"make ray"):
        run_experiment(config, tmp_path / "run")
    assert not (tmp_path / "run" / "report.json").exists()
    moved = {"name": "b", "reconstruction": {"weak_adversary": {"backend": "ray"}}}
    with pytest.raises(ConfigError, match="moved to the config's header"):
        load_config_dict(moved)


@pytest.mark.parametrize("targets", [1, 2], ids=["parts as tasks", "nested in target tasks"])
def test_reference_models_trained_as_ray_tasks_equal_the_local_ones(ray_backend, tmp_path, targets):
    """One target: its ensemble's parts are the tasks. Two: each target is a task, and its
    parts nested tasks of it."""
    from safetensors.torch import load_file

    from conftest import targets_of, tiny_config
    from privlab.config.schema import load_config_dict
    from privlab.run.runner import run_experiment

    two = [{"name": "natural", "regime": "natural"}, {"name": "short", "train": {"epochs": 2}}]
    reports, weights = {}, {}
    for backend in ("local", "ray"):  # Ray: the module's cluster, already running
        cfg = load_config_dict(
            tiny_config(
                cache_dir=str(tmp_path / backend / "cache"),
                backend=backend,
                targets=two[:targets],
                threat_model={"reference": "none", "reference_models": {"count": 8, "tasks": 4}},
                attacks=[{"name": "lira", "params": {"variance": "global"}}],
            )
        )
        reports[backend] = run_experiment(cfg, tmp_path / backend / "run")
        paths = sorted((tmp_path / backend / "cache" / "models").glob("reference-*.safetensors"))
        assert len(paths) == targets
        weights[backend] = [load_file(str(path)) for path in paths]
    for here, there in zip(weights["local"], weights["ray"], strict=True):
        assert here.keys() == there.keys()
        assert all(torch.equal(here[k], there[k]) for k in here)
    local, remote = ([t["attacks"][0]["metrics"]["auc"] for t in targets_of(reports[b])]
                     for b in ("local", "ray"))  # fmt: skip
    assert local == remote


def test_a_gradient_inversion_sweep_on_ray_equals_the_local_one(ray_backend, tmp_path):
    from privlab.config.schema import load_config_dict
    from privlab.run.runner import run_experiment

    points = {}
    for backend in ("local", "ray"):
        cfg = load_config_dict(
            {
                "name": "gi",
                "backend": backend,
                "cache_dir": str(tmp_path / backend),
                "gradient_inversion": GI_SWEEP,
            }
        )
        report = run_experiment(cfg, tmp_path / backend / "run")
        (setting,) = report["studies"]["gradient_inversion"]["runs"][0]["settings"]
        points[backend] = setting["points"]
    assert len(points["ray"]) == 3
    for a, b in zip(points["local"], points["ray"], strict=True):
        assert untimed(a) == untimed(b)


def test_an_audit_of_the_users_model_trains_its_reference_models_on_ray(ray_backend, tmp_path):
    import ray

    import digits_audit
    import privlab

    ray.cloudpickle.register_pickle_by_value(digits_audit)  # the user's model class, by value
    data = digits_audit.digits_arrays()
    model = digits_audit.fit_digits(*data["members"], epochs=30)
    runs = {}
    for backend in ("local", "ray"):
        result = privlab.audit(
            model,
            members=data["members"],
            nonmembers=data["nonmembers"],
            population=data["population"],
            attacks=["lira"],
            recipe={"epochs": 5, "lr": 0.003, "batch_size": 64},
            backend=backend,
            out=tmp_path / backend,
        )
        (target,) = result.report["studies"]["targets"]["runs"][0]["targets"]
        runs[backend] = [untimed(a["metrics"]) for a in target["attacks"]]
    assert runs["ray"] == runs["local"]


def test_the_users_training_function_cannot_train_on_ray():
    from privlab.auditing.plan import on_backend

    with pytest.raises(ValueError, match="train_fn trains in this process only"):
        on_backend({}, "ray", None, trainer="memory-trainer:1")
    assert on_backend({"a": 1}, None, None, trainer=None) == {"a": 1}
    assert on_backend({}, "ray", "auto", trainer=None) == {"backend": "ray", "address": "auto"}


def test_the_weak_adversarys_variants_as_ray_tasks_equal_the_local_ones(ray_backend, tmp_path):
    from privlab.config.schema import load_config_dict
    from privlab.run.runner import run_experiment

    weak = {
        "dataset": "digits",
        "pretrain_epochs": 2,
        "shadows": 400,
        "val_shadows": 100,
        "shard_size": 200,
        "reconstructor": {"kind": "mlp", "width": 32, "lr": 0.003, "eval_every": 20},
        "examples": 2,
        "variants": [{"name": "N=10"}, {"name": "N=20", "n": 20}],
    }
    variants = {}
    for backend in ("local", "ray"):
        config = {"name": "w", "backend": backend, "cache_dir": str(tmp_path / backend)}
        cfg = load_config_dict(config | {"reconstruction": {"weak_adversary": weak}})
        report = run_experiment(cfg, tmp_path / backend / "run")
        run = report["studies"]["reconstruction"]["runs"][0]
        variants[backend] = untimed(run["weak_adversary"]["variants"])
    assert [v["name"] for v in variants["ray"]] == ["N=10", "N=20"]
    for a, b in zip(variants["local"], variants["ray"], strict=True):
        # the ROC's Neyman-Pearson curves are fitted numerically (BLAS threads: rounding)
        roc_a, roc_b = a.pop("roc"), b.pop("roc")
        assert a == b
        assert roc_a.keys() == roc_b.keys()
        assert _close(roc_a, roc_b)


def _close(a: object, b: object) -> bool:
    """Equal, numbers up to 1e-6."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= 1e-6
    return a == b


def test_an_unreachable_cluster_is_one_error_line_not_a_long_wait():
    from privlab.run.backend import _check_reachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(BackendError, match="host:port"):
        _check_reachable("127.0.0.1:port")


def test_the_seeds_of_a_study_as_ray_tasks_give_the_local_runs(ray_backend, tmp_path):
    from conftest import tiny_config
    from privlab.config.schema import load_config_dict
    from privlab.run.runner import run_experiment

    runs = {}
    for backend in ("local", "ray"):
        cfg = load_config_dict(
            tiny_config(seeds=[0, 1], backend=backend, cache_dir=str(tmp_path / backend / "c"))
        )
        report = run_experiment(cfg, tmp_path / backend / "run")
        # as report.json holds it (a tuple and a list are the same there)
        runs[backend] = json.loads(json.dumps(untimed(report["studies"]["targets"]["runs"])))
        assert [r["seed"] for r in runs[backend]] == [0, 1]
    assert _close(runs["ray"], runs["local"]), _first_difference(runs["ray"], runs["local"])
    assert (
        len(list((tmp_path / "ray" / "run" / "state").glob("cell-targets-*.json"))) == 4
    )  # 2 seeds × 2 targets


def _first_difference(a: object, b: object, at: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() | b.keys():
            if not _close(a.get(k), b.get(k)):
                return _first_difference(a.get(k), b.get(k), f"{at}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if not _close(x, y):
                return _first_difference(x, y, f"{at}[{i}]")
    return f"{at}: {str(a)[:200]} != {str(b)[:200]}"
