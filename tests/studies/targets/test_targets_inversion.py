"""Model inversion in the targets study, through run_experiment: report contents, resume from
state, bad input."""

from __future__ import annotations

import json

import pytest

from conftest import data_of, targets_of, tiny_config
from privlab.config import ConfigError, load_config_dict
from privlab.run.runner import run_experiment
from privlab.studies.targets.inversion_report import inversion_markdown, inversion_rows
from privlab.studies.targets.study import flat_view

INVERSION = {
    "attacks": [{"name": "ppa", "params": {"search": 200, "candidates": 6, "steps": 20}}],
    "prior": {"epochs": 10, "latent": 4, "hidden": 64},
    "evaluator": {"train": {"epochs": 5}},
    "robustness": {"eps": 0.1, "steps": 10, "samples": 64},
    "hsic_samples": 64,
    "hsic_batch": 32,
}


def _config(tmp_path, **overrides):
    overrides = {"attacks": [], "inversion": INVERSION, **overrides}
    cfg = tiny_config(cache_dir=str(tmp_path / "cache"), **overrides)
    cfg["targets"]["threat_model"]["access"] = ["logits", "input_gradients"]
    cfg["targets"]["targets"] = [
        {"name": "natural", "regime": "natural"},
        {
            "name": "mask",
            "regime": {"name": "drop_layer", "params": {"lam": 20.0, "threshold": 0.05}},
            "train": {"epochs": 20, "lr": 0.02},
        },
        {"name": "tl_dmi", "regime": "tl_dmi"},
    ]
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inv")
    return out, run_experiment(load_config_dict(_config(out)), out)


def test_report_has_inversion_results_for_every_target(run):
    out, report = run
    on_disk = json.loads((out / "report.json").read_text())
    for t in targets_of(on_disk):
        inv = t["inversion"]
        (attack,) = inv["attacks"]
        assert 0 <= attack["acc1"] <= attack["acc5"] <= 1 and attack["knn_dist"] >= 0
        assert len(attack["grid"]) == 4 and {"image", "nearest"} <= set(attack["grid"][0])
        assert 0 <= inv["robustness"]["robust_acc"] <= inv["robustness"]["clean_acc"]
        assert len(inv["hsic"]) == 1  # one hidden ReLU layer
    masked = targets_of(on_disk)[1]["inversion"]["masked_pixels"]
    assert masked["pixels_kept"] < masked["pixels_total"] and masked["identical_outputs"]
    inv_split = data_of(on_disk)["inversion"]
    assert inv_split["public"] > 0 and len(inv_split["public_sha256"]) == 64
    html = (out / "report.html").read_text()
    assert "Model inversion" in html and "nearest private image" in html
    assert "per-class reconstruction rate" in html
    view = flat_view(on_disk, on_disk["studies"]["targets"])
    rows = inversion_rows(view)
    assert [r["target"] for r in rows] == ["natural", "mask", "tl_dmi"]
    assert "ppa KNN dist" in inversion_markdown(view)


def test_rerun_resumes_from_state(run, tmp_path):
    out, report = run
    again = run_experiment(load_config_dict(_config(out)), out)
    first, second = (
        {
            k: v
            for k, v in json.loads(json.dumps(targets_of(r)[0]["inversion"])).items()
            if k != "seconds"
        }
        for r in (report, again)
    )
    assert first == second and targets_of(again)[0]["inversion"]["seconds"] < 1.0
    assert again["timings"]["train_seconds"] == 0.0


def test_missing_access_is_refused_before_training(tmp_path):
    cfg = _config(tmp_path)
    cfg["targets"]["threat_model"]["access"] = ["labels"]
    with pytest.raises(
        ConfigError, match=r"inversion.attacks.0 \(ppa\) needs access.*input_gradients"
    ):
        run_experiment(load_config_dict(cfg), tmp_path / "out")


def test_attack_families_are_kept_apart(tmp_path):
    cfg = _config(tmp_path)
    cfg["targets"]["inversion"] = {**INVERSION, "attacks": [{"name": "confidence"}]}
    with pytest.raises(ConfigError, match="'confidence' is not a inversion attack.*ppa"):
        load_config_dict(cfg)
    with pytest.raises(ConfigError, match="'ppa' is not a membership attack"):
        load_config_dict(_config(tmp_path, attacks=[{"name": "ppa"}]))


def test_public_classes_must_be_disjoint_from_the_private_ones(tmp_path):
    cfg = _config(tmp_path)
    cfg["targets"]["data"]["classes"] = [0, 1]
    cfg["targets"]["inversion"] = {**INVERSION, "prior": {"public_classes": [1, 2]}}
    with pytest.raises(ConfigError, match=r"disjoint.*shared: \[1\]"):
        load_config_dict(cfg)


def test_unknown_private_class_names_the_valid_ones(tmp_path):
    cfg = _config(tmp_path)
    cfg["targets"]["data"]["classes"] = [0, 7]
    with pytest.raises(ConfigError, match="data.classes.*0–3"):
        run_experiment(load_config_dict(cfg), tmp_path / "out")


def test_robustness_correlation_matches_hand_computed_ranks():
    from privlab.studies.targets.inversion_report import robustness_correlation

    def target(name, robust, acc1, knn):
        attack = {"label": "ppa", "acc1": acc1, "acc5": 1.0, "nn_acc1": acc1, "knn_dist": knn}
        return {
            "name": name,
            "utility": {"test_acc": 0.9},
            "inversion": {"attacks": [attack], "robustness": {"robust_acc": robust}},
        }

    report = {
        "targets": [
            target("a", 0.1, 0.2, 40.0),
            target("b", 0.3, 0.5, 30.0),
            target("c", 0.5, 0.6, 35.0),
            target("d", 0.7, 0.9, 10.0),
            target("perm", 0.0, 0.9, 99.0),
        ]
    }
    corr = robustness_correlation(report, "ppa", exclude=("perm",))
    assert corr["targets"] == ["a", "b", "c", "d"]
    assert corr["acc1"]["rho"] == pytest.approx(1.0)
    # ranks of knn: 4, 2, 3, 1 against 1, 2, 3, 4: Σd² = 9 + 0 + 0 + 9, ρ = 1 − 6·Σd²/(n(n²−1))
    assert corr["knn_dist"]["rho"] == pytest.approx(1 - 6 * 18 / 60)
