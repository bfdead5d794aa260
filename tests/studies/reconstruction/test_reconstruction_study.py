"""``kind: reconstruction`` experiments: config checks, an end-to-end run, resume, report."""

import json
import math

import pytest

from privlab.config import ConfigError, load_config_dict
from privlab.studies.reconstruction.config import ReconstructionExperimentConfig
from privlab.run.runner import run_experiment

SMALL = {
    "kind": "reconstruction",
    "name": "small_recon",
    "weak_adversary": {
        "dataset": "digits",
        "pretrain_epochs": 2,
        "shadows": 600,
        "val_shadows": 100,
        "shard_size": 300,
        "reconstructor": {"kind": "mlp", "width": 64, "lr": 0.003, "eval_every": 50},
        "examples": 3,
        "variants": [{"name": "N=10"}, {"name": "dp eps=50", "dp": {"epsilon": 50}}],
    },
    "informed_adversary": {
        "shadows": 200,
        "victims": 20,
        "reconnn": {"epochs": 3, "width": 64},
        "head": {"hidden": 8, "sigma_init": 0.1, "lr": 0.5, "weight_decay": 0.0, "epochs": 20},
        "dp_head": {"sigma_init": 0.01, "lr": 0.5, "weight_decay": 0.0, "epochs": 10},
        "epsilons": [10, 1000],
        "closed_form": {"fixed": 100, "targets": 2},
    },
}


def test_reconstruction_configs_are_checked():
    cfg = load_config_dict(SMALL)
    assert isinstance(cfg, ReconstructionExperimentConfig)
    with pytest.raises(ConfigError, match="unknown key 'weak_adversary.shadow'"):
        load_config_dict({"kind": "reconstruction", "weak_adversary": {"shadow": 3}})
    with pytest.raises(ConfigError, match="needs weak_adversary or informed_adversary"):
        load_config_dict({"kind": "reconstruction"})
    with pytest.raises(ConfigError, match="binary head"):
        load_config_dict({"kind": "reconstruction", "weak_adversary": {"task": "one_vs_rest"}})
    with pytest.raises(ConfigError, match="variant names must be unique"):
        load_config_dict(
            {"kind": "reconstruction", "weak_adversary": {"variants": [{"name": "a"}] * 2}}
        )
    with pytest.raises(ConfigError, match="epsilon"):
        load_config_dict({"kind": "reconstruction", "weak_adversary": {"dp": {"epsilon": -1}}})


def test_end_to_end_run_resumes_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    cfg = load_config_dict(SMALL)
    report = run_experiment(cfg, tmp_path / "run")
    weak, informed = report["weak_adversary"], report["informed_adversary"]
    assert [v["name"] for v in weak["variants"]] == ["N=10", "dp eps=50"]
    plain, private = weak["variants"]
    for v in weak["variants"]:
        assert 0 <= v["fpr"] <= 1 and 0 <= v["tpr"] <= 1 and len(v["examples"]) == 3
        assert v["roc"]["fpr"][0] <= v["roc"]["fpr"][-1]
        assert 0.1 < v["utility"]["accuracy"] <= 1
    assert "privacy" not in plain and private["privacy"]["epsilon"] == pytest.approx(50, rel=0.05)
    assert private["tpr"] <= private["bound"]["tpr_bound"] + 0.02
    assert set(weak["defended_epsilon"]) == {"10"}
    assert informed["closed_form"]["exact"] == 1.0
    assert [r["known_init"] for r in informed["reconnn"]] == [True, False]
    for row in informed["dp"][1:]:  # the first row is the non-private reference
        # both are valid bounds (Thm 2 over the RDP curve; κe^ε + δ for (ε, δ)-DP)
        assert row["nn_oracle_success"] <= min(row["gamma"], row["gamma_dp"]) + 0.05
        kappa_e_eps = math.exp(min(0.0, math.log(1 / 1198) + row["epsilon_spent"]))
        assert row["gamma_dp"] >= kappa_e_eps
    html = (tmp_path / "run" / "report.html").read_text()
    for text in ("Weak adversary", "Informed adversary", "ReRo bound", "figure"):
        assert text in html
    assert "figure unavailable" not in html
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["kind"] == "reconstruction" and saved["weak_adversary"]["tau"] == weak["tau"]
    # resume: every unit comes from state/, nothing is trained again
    import privlab.studies.reconstruction.informed as informed
    import privlab.studies.reconstruction.weak as rec

    def boom(*a, **k):
        raise AssertionError("retrained a finished unit")

    monkeypatch.setattr(rec, "train_reconstructor", boom)
    monkeypatch.setattr(informed, "train_reconnn", boom)
    again = run_experiment(cfg, tmp_path / "run")
    assert again["weak_adversary"]["variants"] == weak["variants"]
