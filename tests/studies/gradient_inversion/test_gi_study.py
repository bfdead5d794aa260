"""The gradient-inversion study (Liu et al. 2025; a ``gradient_inversion:`` section): config
checks, an end-to-end run with defences and utility, resume from state/, the report section and
the matched comparison."""

import json
import math

import pytest

from conftest import targets_of, tiny_config
from privlab.config import ConfigError, load_config_dict
from privlab.run.runner import run_experiment
from privlab.studies.gradient_inversion import run as gi
from privlab.studies.gradient_inversion.config import GradientInversionConfig
from privlab.studies.gradient_inversion.report import (
    attacks_figure,
    grid_figure,
    matched_table,
    points_table,
    tradeoff_figure,
)

SMALL = {
    "name": "small_gi",
    "gradient_inversion": {
        "data": "digits",
        "model": {"name": "mlp", "params": {"hidden": [32]}},
        "clients": [{"batch_size": 2}],
        "batches": 2,
        "examples": 2,
        "attacks": [
            {
                "name": "inverting_gradients",
                "label": "IG",
                "params": {"iterations": 150, "restarts": 1},
            }
        ],
        "defences": [
            "none",
            {"name": "pruning", "sweep": {"p": [0.9, 0.999]}},
            {"name": "dp", "params": {"clip": 1.0}, "sweep": {"noise_multiplier": [1.0]}},
        ],
        "utility": {"clients": 4, "rounds": 15},
    },
}


def _section(**overrides):
    data = json.loads(json.dumps(SMALL))
    data["gradient_inversion"].update(overrides)
    return data


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"attack": []}, "unknown key 'gradient_inversion.attack'"),
        ({"attacks": ["ppa"]}, "'ppa' is not a gradient_inversion attack"),
        ({"attacks": [{"name": "inverting_gradients", "params": {"iters": 3}}]}, "attacks.0"),
        ({"defences": [{"name": "prune"}]}, "unknown defence 'prune'"),
        ({"defences": [{"name": "pruning", "sweep": {"p": [0.5, 1.5]}}]}, "p must be in"),
        ({"defences": [{"name": "pruning", "sweep": {"p": [0.5], "scope": ["layer"]}}]}, "one"),
        ({"defences": [{"name": "pruning", "params": {"p": 0.5}, "sweep": {"p": [0.9]}}]}, "both"),
        ({"defences": ["none", "none"]}, "defence labels must be unique"),
        ({"clients": [{"batch_size": 2, "local_batch": 4}]}, "local_batch"),
        ({"model": "no_such_model"}, "unknown model"),
    ],
)
def test_bad_configs_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config_dict(_section(**override))


def gi_run(report):
    """The (only) seed's run of the gradient-inversion study."""
    (run,) = report["studies"]["gradient_inversion"]["runs"]
    return run


def test_configs_select_the_schema_and_points():
    cfg = load_config_dict(SMALL)
    assert isinstance(cfg.gradient_inversion, GradientInversionConfig)
    assert list(cfg.studies()) == ["gradient_inversion"]
    with pytest.raises(ConfigError, match="kind: gradient_inversion` configs are gone"):
        load_config_dict({"kind": "gradient_inversion", **SMALL})
    sweep = cfg.gradient_inversion.defences[1]
    assert [(r, p, label) for r, p, label in sweep.points()] == [
        (0, {"p": 0.9}, "pruning p=0.9"),
        (1, {"p": 0.999}, "pruning p=0.999"),
    ]
    demo = load_config_dict(
        {
            "targets": {
                "data": "digits",
                "model": "mlp",
                "targets": [{"name": "t", "regime": "natural"}],
            },
            "gradient_inversion": SMALL["gradient_inversion"],
        }
    )
    assert set(demo.studies()) == {"gradient_inversion", "targets"}
    assert demo.gradient_inversion == cfg.gradient_inversion


def test_end_to_end_run_defends_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    report = run_experiment(load_config_dict(SMALL), tmp_path / "run")
    assert gi_run(report)["seed"] == 0
    (setting,) = gi_run(report)["settings"]
    points = {p["label"]: p for p in setting["points"]}
    assert list(points) == ["none", "pruning p=0.9", "pruning p=0.999", "dp noise_multiplier=1.0"]
    clear, pruned = points["none"]["attacks"]["IG"], points["pruning p=0.999"]["attacks"]["IG"]
    base = setting["baselines"]["mean_image"]
    # the attack recovers the undefended batch, far better than the mean image ...
    assert clear["psnr"] > base["psnr"] + 10 and clear["identified"] == 1.0
    # ... and a strong defence takes that away
    assert pruned["psnr"] < clear["psnr"] - 10
    assert points["dp noise_multiplier=1.0"]["best"]["psnr"] < clear["psnr"] - 10
    # utility: the undefended point costs nothing, DP has an ε and a finite cost
    assert points["none"]["utility"]["utility_loss"] == 0.0
    dp = points["dp noise_multiplier=1.0"]["utility"]
    assert dp["epsilon"] is not None and dp["epsilon"] > 0 and math.isfinite(dp["utility_loss"])
    assert "rmse" in setting["matched"] and setting["utility_noise_floor"] >= 0
    assert len(setting["originals"]) == 2 and len(points["none"]["examples"]["IG"]) == 2
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Gradient inversion in federated learning" in html
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(saved["studies"]) == ["gradient_inversion"] and saved["schema_version"] == 2

    # a second run reads every unit from state/: nothing is attacked or trained again
    def refuse(*_a, **_k):
        raise AssertionError("recomputed a finished unit")

    monkeypatch.setattr(gi, "attack_point", refuse)
    monkeypatch.setattr(gi, "utility_point", refuse)
    again = run_experiment(load_config_dict(SMALL), tmp_path / "run")
    assert json.dumps(gi_run(again)["settings"]) == json.dumps(gi_run(report)["settings"])


def test_too_many_batches_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    cfg = load_config_dict(_section(batches=10_000, utility=None))
    with pytest.raises(ValueError, match="batches of 2 need 20000 members"):
        run_experiment(cfg, tmp_path / "run")


def _point(defence, rank, loss, rmse):
    return {
        "label": f"{defence} {rank}",
        "label_defence": defence,
        "defence": defence,
        "rank": rank,
        "best": {"rmse": rmse, "psnr": -20 * math.log10(rmse)},
        "utility": {"utility_loss": loss},
    }


def test_matched_comparison_prefers_the_defence_that_protects_more_per_cost():
    points = [
        _point("none", 0, 0.0, 0.01),
        _point("pruning", 0, 0.05, 0.2),
        _point("pruning", 1, 0.1, 0.3),
        _point("dp", 0, 0.1, 0.05),
        _point("dp", 1, 0.3, 0.4),
        _point("noise", 0, -0.02, 0.5),  # no measurable cost: counts as 0
    ]
    out = gi.matched_comparison(points, levels=4)
    rows = out["rmse"]["rows"]
    assert [round(r["utility_loss"], 3) for r in rows] == [0.0, 0.05, 0.1, 0.3]  # measured levels
    assert rows[0]["noise"] == pytest.approx(0.5) and rows[0]["best_defence"] == "noise"
    assert rows[1]["dp"] == pytest.approx(0.03)  # interpolated between its knots
    assert rows[2]["pruning"] == pytest.approx(0.3) and rows[2]["dp"] == pytest.approx(0.05)
    assert rows[2]["best_defence"] == "pruning"
    assert math.isnan(rows[3]["pruning"]) and rows[3]["best_defence"] == "dp"
    assert out["rmse"]["wins"] == {"noise": 1, "pruning": 2}  # levels with one defence don't count
    assert out["psnr"]["rows"][2]["best_defence"] == "pruning"  # lower PSNR protects more
    # a loss within the run-to-run noise floor is no loss: pruning p0 joins the free level
    floored = gi.matched_comparison(points, levels=4, noise_floor=0.06)["rmse"]["rows"]
    assert [round(r["utility_loss"], 3) for r in floored] == [0.0, 0.1, 0.3]
    assert floored[0]["pruning"] == pytest.approx(0.2)
    # many measured losses are thinned to the requested number of levels
    assert len(gi.matched_comparison(points, levels=2)["rmse"]["rows"]) == 2


def test_report_tables_and_figures_render(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    data = _section(defences=["none", {"name": "pruning", "sweep": {"p": [0.99]}}])
    data["gradient_inversion"]["utility"] = {"clients": 2, "rounds": 3}
    data["gradient_inversion"]["attacks"][0]["params"]["iterations"] = 10
    report = run_experiment(load_config_dict(data), tmp_path / "run")
    sec = gi_run(report)
    view = {"gradient_inversion": sec}  # the form the study's tables read
    header, rows = points_table(view)
    assert header[:4] == ["client", "defence", "zeros % before→after", "PSNR IG"]
    assert len(rows) == 2
    assert matched_table(view)[1]
    for figure in (tradeoff_figure(sec), attacks_figure(sec), grid_figure(sec["settings"][0])):
        assert len(figure) > 2000  # a real PNG, not the placeholder


def test_a_gradient_inversion_section_joins_a_targets_study(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    section = _section(defences=["none"], utility=None, batches=1)["gradient_inversion"]
    section["attacks"][0]["params"]["iterations"] = 20
    config = tiny_config(targets=[{"name": "natural", "regime": "natural"}], attacks=[])
    report = run_experiment(load_config_dict(config | {"gradient_inversion": section}), tmp_path)
    assert list(report["studies"]) == ["targets", "gradient_inversion"]  # the studies' order
    assert targets_of(report) and gi_run(report)["settings"][0]["points"]
    html = (tmp_path / "report.html").read_text()
    assert "Gradient inversion in federated learning" in html and "Membership inference" in html


def test_a_diverged_fedavg_run_shows_its_loss_in_exponent_form():
    """A defence that makes FedAvg diverge (training loss 4e18) is printed as 3.97e+18, not as
    a 22-digit fixed-point number; ordinary losses keep 3 decimals."""
    point = {"label": "noise std=0.1", "attacks": {}, "best": {}}
    settings = [
        {
            "client": {"label": "B=4"},
            "points": [
                point | {"utility": {"utility_loss": 3.974e18}},
                point | {"label": "noise std=0.03", "utility": {"utility_loss": -0.0161}},
            ],
            "matched": {"rmse": {"rows": [{"utility_loss": 3.974e18, "noise": 0.38}]}},
        }
    ]
    report = {"gradient_inversion": {"attacks": [], "settings": settings}}
    header, rows = points_table(report)
    column = header.index("utility loss")
    assert [r[column] for r in rows] == ["3.97e+18", "-0.016"]
    assert matched_table(report)[1][0][1] == "3.97e+18"
