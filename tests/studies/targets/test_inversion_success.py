"""Model-inversion success by distance in the targets study: a small inversion run records τ,
the distance success and the combined success beside Acc@1; the tables show them, the grid
ticks only what passes both, and reports written before them still render."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import targets_of, tiny_config
from privlab.config import load_config_dict
from privlab.run.runner import run_experiment
from privlab.studies.targets import inversion_report
from privlab.studies.targets.console import inversion_text_table
from privlab.studies.targets.html import targets_html
from privlab.studies.targets.inversion_report import inversion_table, tau_note
from privlab.studies.targets.study import flat_view

NEW_ATTACK_KEYS = ("dist_success", "both_success", "nearest_mse", "tau")
NEW_INVERSION_KEYS = ("tau", "class_mean_within_tau", "heldout_within_tau")
NEW_GRID_KEYS = ("within_tau", "both", "nearest_mse")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inv_success")
    cfg = tiny_config(
        cache_dir=str(out / "cache"),
        attacks=[],
        targets=[{"name": "natural", "regime": "natural"}],
        inversion={
            "attacks": [
                {"name": "mi_face", "params": {"steps": 30, "restarts": 3, "per_class": 2}}
            ],
            "prior": {"epochs": 1, "latent": 2, "hidden": 16},
            "evaluator": {"train": {"epochs": 3}},
            "robustness": None,
            "hsic_samples": 0,
            "grid_classes": 4,
        },
    )
    cfg["targets"]["threat_model"]["access"] = ["logits", "input_gradients"]
    run_experiment(load_config_dict(cfg), out)
    return json.loads((out / "report.json").read_text())


def test_the_run_records_tau_and_the_distance_and_combined_success(run):
    (target,) = targets_of(run)
    inv = target["inversion"]
    assert inv["tau"] > 0
    assert 0 <= inv["class_mean_within_tau"] <= 1 and 0 <= inv["heldout_within_tau"] <= 1
    (attack,) = inv["attacks"]
    assert attack["tau"] == inv["tau"]
    assert 0 <= attack["both_success"] <= min(attack["acc1"], attack["dist_success"]) <= 1
    assert attack["nearest_mse"] >= 0
    assert set(attack["per_class"]) == {"0", "1", "2", "3"}
    for stats in attack["per_class"].values():
        assert {"acc1", "knn_dist", "dist_success", "both_success", "nearest_mse"} <= set(stats)
        assert stats["both_success"] <= min(stats["acc1"], stats["dist_success"])
    assert len(attack["grid"]) == 4
    for g in attack["grid"]:
        assert g["both"] == (g["hit1"] and g["within_tau"])
        assert g["within_tau"] == (g["nearest_mse"] <= inv["tau"])
    assert not any(k.startswith("image_") for k in attack)


def test_tables_show_acc1_the_distance_success_and_both(run):
    view = flat_view(run, run["studies"]["targets"])
    header, cells = inversion_table(view)
    for col in ("mi_face Acc@1", "mi_face within τ", "mi_face Acc@1 & τ", "mi_face pixel MSE"):
        assert col in header
        assert cells[0][header.index(col)] != "—"
    console = inversion_text_table(view)
    assert console is not None
    assert {"mi_face Acc@1", "mi_face within τ", "mi_face Acc@1 & τ"} <= set(console.header)
    assert f"τ = {run['studies']['targets']['runs'][0]['targets'][0]['inversion']['tau']:.4f}" in (
        tau_note(view) or ""
    )
    assert "τ =" in targets_html(view) and "within τ" in targets_html(view)


def test_the_grid_ticks_only_what_passes_both(monkeypatch):
    captured = []
    monkeypatch.setattr(
        inversion_report,
        "image_pairs_figure",
        lambda pairs, title: captured.append((pairs, title)) or "",
    )
    blank = "00" * 4
    image = {"image": blank, "nearest": blank}
    attack = {
        "label": "mi_face",
        "grid": [
            {**image, "class_name": "blob", "hit1": True, "within_tau": False, "both": False},
            {**image, "class_name": "copy", "hit1": True, "within_tau": True, "both": True},
            {**image, "class_name": "far", "hit1": False, "within_tau": True, "both": False},
            {**image, "class_name": "old", "hit1": True},  # a report before the distance success
        ],
    }
    monkeypatch.setattr(inversion_report, "decode_image_hex", lambda text: text)
    inversion_report.grid_figure(attack)
    ((pairs, title),) = captured
    assert [label for _, _, label in pairs] == ["blob ✗", "copy ✓", "far ✗", "old —"]
    assert "within τ" in title


def _strip(report):
    """The report as written before the distance success."""
    old = copy.deepcopy(report)
    for t in targets_of(old):
        inv = t["inversion"]
        for key in NEW_INVERSION_KEYS:
            inv.pop(key)
        for a in inv["attacks"]:
            for key in NEW_ATTACK_KEYS:
                a.pop(key)
            for stats in a["per_class"].values():
                for key in ("dist_success", "both_success", "nearest_mse"):
                    stats.pop(key)
            for g in a["grid"]:
                for key in NEW_GRID_KEYS:
                    g.pop(key)
    return old


def test_reports_without_the_new_fields_still_render(run):
    old = _strip(run)
    view = flat_view(old, old["studies"]["targets"])
    header, cells = inversion_table(view)
    for col in ("mi_face within τ", "mi_face Acc@1 & τ", "mi_face pixel MSE"):
        assert cells[0][header.index(col)] == "—"
    assert cells[0][header.index("mi_face Acc@1")] != "—"
    assert tau_note(view) is None
    html = targets_html(view)
    assert "Model inversion" in html and "τ = " not in html
    assert inversion_text_table(view) is not None
