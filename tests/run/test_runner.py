"""The runner end to end on tiny data: report schema, run folder, caching, resume, seeds and
bad input (refused before anything is trained)."""

import json
import math

import pytest
import torch

from conftest import data_of, study_runs, targets_of, tiny_config
from privlab.config import ConfigError, load_config_dict
from privlab.config.schema import ExperimentConfig
from privlab.run import model_cache as model_store
from privlab.run.runner import run_experiment
from privlab.run.weights import ModelFileError, load_state, save_model

STABLE_KEYS = {"schema_version", "config", "seeds", "versions", "device", "timings", "studies"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = load_config_dict(tiny_config(cache_dir=str(out / "cache")))
    return out, run_experiment(cfg, out)


def test_report_has_the_stable_schema(run):
    out, report = run
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk) >= STABLE_KEYS
    assert on_disk["schema_version"] == 2
    assert set(on_disk["studies"]) == {"targets"} and on_disk["seeds"] == [0]
    assert [run["seed"] for run in study_runs(on_disk)] == [0]
    assert on_disk["config"]["targets"]["train"]["epochs"] == 3
    for t in targets_of(on_disk):
        assert {"name", "regime", "model_sha256", "utility", "privacy", "attacks"} <= set(t)
        assert set(t["utility"]) >= {"train_acc", "test_acc", "adv_train_acc", "adv_test_acc"}
        assert 0.0 <= t["utility"]["ver_test_acc"] <= t["utility"]["adv_test_acc"] + 1e-9
        for a in t["attacks"]:
            assert {"name", "family", "seconds", "metrics"} <= set(a)
            m = a["metrics"]
            assert {"accuracy", "advantage", "auc", "tpr_at_fpr"} <= set(m)
            assert set(m["tpr_at_fpr"]) == {"0.1", "0.01", "0.001"}
            assert math.isclose(m["advantage"], 2 * (m["accuracy"] - 0.5))
            assert m["honest"]["source"] == "shadow"
    assert {t["regime"] for t in targets_of(on_disk)} == {"natural", "pgd_at"}


def test_run_folder_holds_html_and_safetensors_models(run):
    out, report = run
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    stored = sorted(p.name for p in (out / "models").glob("*.safetensors"))
    assert stored == ["natural.safetensors", "pgd_at.safetensors"]
    assert data_of(report)["sha256"]["members"]
    assert report["versions"]["torch"].startswith("2.13")


def test_second_run_resumes_from_the_cache_without_training(run, monkeypatch, tmp_path):
    out, first = run

    def no_training(*args, **kwargs):
        raise AssertionError("retrained a cached model")

    monkeypatch.setattr(model_store, "train", no_training)
    cfg = load_config_dict(tiny_config(cache_dir=str(out / "cache")))
    second = run_experiment(cfg, out)  # same folder: attacks come from state/ too
    assert [t["model_sha256"] for t in targets_of(second)] == [
        t["model_sha256"] for t in targets_of(first)
    ]
    assert targets_of(second)[0]["attacks"] == targets_of(first)[0]["attacks"]
    third = run_experiment(cfg, tmp_path / "fresh")  # new folder: models cached, attacks rerun
    a, b = (
        targets_of(first)[1]["attacks"][1]["metrics"],
        targets_of(third)[1]["attacks"][1]["metrics"],
    )
    assert a["auc"] == pytest.approx(b["auc"])  # deterministic under the seed


def test_corrupt_cached_model_is_retrained_with_a_warning(run, tmp_path):
    out, _ = run
    cache = tmp_path / "cache"
    cfg = load_config_dict(tiny_config(cache_dir=str(cache), attacks=[]))
    run_experiment(cfg, tmp_path / "a")
    for f in (cache / "models").glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:100])  # truncate
    with pytest.warns(UserWarning, match="corrupt safetensors"):
        report = run_experiment(cfg, tmp_path / "b")
    assert len(targets_of(report)) == 2


def test_nan_weights_are_rejected_on_save_and_load(tmp_path):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(ModelFileError, match="non-finite.*weight"):
        save_model(model, tmp_path / "m.safetensors", {})
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "n.safetensors")
    )
    with pytest.raises(ModelFileError, match="n.safetensors: non-finite"):
        load_state(torch.nn.Linear(3, 2), tmp_path / "n.safetensors")
    with pytest.raises(ModelFileError, match="not found"):
        load_state(torch.nn.Linear(3, 2), tmp_path / "missing.safetensors")


def test_attack_needing_more_access_is_refused_before_training(tmp_path):
    cfg = load_config_dict(tiny_config(threat_model={"access": ["probs"]}))
    with pytest.raises(ConfigError, match=r"I_A.*needs access \['input_gradients'\]"):
        run_experiment(cfg, tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_temperatures_and_seeds_expand_targets(tmp_path):
    cfg = load_config_dict(
        tiny_config(
            seeds=[0, 1],
            targets=[{"name": "natural", "regime": "natural", "temperature": [1, 5]}],
            attacks=[{"name": "confidence", "label": "I_B"}],
            threat_model={"reference": "none"},
        )
    )
    report = run_experiment(cfg, tmp_path)
    assert [run["seed"] for run in study_runs(report)] == [0, 1]
    names = [t["name"] for t in targets_of(report)]
    assert names == [
        "natural/seed0@T=1",
        "natural/seed0@T=5",
        "natural/seed1@T=1",
        "natural/seed1@T=5",
    ]
    t1, t5 = targets_of(report)[:2]
    assert t1["utility"] == t5["utility"]  # temperature never changes predictions
    assert t1["attacks"][0]["metrics"]["honest"] is None  # no reference data, no honest threshold


def test_missing_dataset_file_is_a_clear_error(tmp_path):
    cfg = load_config_dict(
        tiny_config(data={"name": "mnist_idx", "params": {"path": str(tmp_path)}})
    )
    with pytest.raises(ValueError, match=str(tmp_path)):
        run_experiment(cfg, tmp_path / "out")


def test_on_a_remote_backend_each_target_of_a_seed_is_a_task_with_nested_tasks_merged_back(
    tmp_path, monkeypatch
):
    from privlab.run.backend import LocalBackend
    from ray_support import untimed

    def config(cache: str) -> ExperimentConfig:
        return load_config_dict(
            tiny_config(
                cache_dir=str(tmp_path / cache),
                threat_model={"reference": "none", "reference_models": {"count": 4, "tasks": 2}},
                attacks=[{"name": "lira", "params": {"variance": "global"}}],
            )
        )

    local = run_experiment(config("local-cache"), tmp_path / "local")
    handed = []
    monkeypatch.setattr(LocalBackend, "remote", True)  # a cluster that runs tasks in-process
    original = LocalBackend.map

    def map_and_count(self, fn, items, **kwargs):
        handed.extend(items)
        return original(self, fn, items, **kwargs)

    monkeypatch.setattr(LocalBackend, "map", map_and_count)
    remote = run_experiment(config("remote-cache"), tmp_path / "remote")
    cells = [(item[0], item[1].targets[0].name) for item in handed if len(item) == 2]
    assert cells == [(0, "natural"), (0, "pgd_at")]  # one seed, two targets: two tasks
    parts = [item for item in handed if len(item) == 3]  # (first, last, models)
    assert len(parts) == 2 * 2  # inside each, its reference models' two parts: nested tasks
    as_json = [json.loads(json.dumps(untimed(study_runs(r)))) for r in (remote, local)]
    assert as_json[0] == as_json[1]
    assert len(list((tmp_path / "remote" / "state").glob("cell-targets-*.json"))) == 2
