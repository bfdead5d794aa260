"""The targets study end to end on tiny data: revealed members, leave-out sensitivity,
reference-model attacks (LiRA, RMIA, Shokri) and their refusal before training."""

import pytest

from conftest import data_of, targets_of, tiny_config
from privlab.config import ConfigError, load_config_dict
from privlab.run.runner import run_experiment


def test_known_reference_reveals_points_and_evaluates_on_the_rest(tmp_path):
    cfg = load_config_dict(
        tiny_config(
            threat_model={"reference": "known", "known_per_class": 5},
            targets=[{"name": "natural", "regime": "natural"}],
            attacks=[
                {"name": "confidence"},
                {"name": "inference_network", "params": {"view": "benign", "epochs": 20}},
            ],
        )
    )
    report = run_experiment(cfg, tmp_path)
    members = data_of(report)["members"]
    for attack in targets_of(report)[0]["attacks"]:
        assert attack["n_eval"]["members"] == members - 5 * 4
        assert len(attack["metrics"]["per_class"]) == 4
    assert targets_of(report)[0]["attacks"][1]["metrics"]["honest"]["source"] == "attack"


def test_leave_out_sensitivity_retrains_without_one_member_per_class(tmp_path):
    cfg = load_config_dict(
        tiny_config(
            targets=[
                {"name": "natural", "regime": "natural"},
                {
                    "name": "pgd_at",
                    "regime": {"name": "pgd_at", "params": {"eps": 0.1, "steps": 2}},
                },
            ],
            train={"epochs": 40, "batch_size": 16},
            attacks=[],
            threat_model={"reference": "none"},
            sensitivity={"rounds": 2, "targets": ["natural"]},
        )
    )
    report = run_experiment(cfg, tmp_path)
    natural, pgd = targets_of(report)
    s = natural["sensitivity"]
    assert len(s["values"]) == 2 * 4 and s["values"] == sorted(s["values"])
    assert s["mean"] > 0  # an overfit model is more confident on points it was trained on
    assert pgd["sensitivity"] is None  # not selected
    assert "Leave-out sensitivity" in (tmp_path / "report.html").read_text()
    bad = tiny_config(sensitivity={"targets": ["nope"]})
    with pytest.raises(ConfigError, match="sensitivity.targets.*nope"):
        load_config_dict(bad)


def test_reference_model_attacks_run_end_to_end_and_resume(tmp_path, monkeypatch):
    """LiRA, RMIA and Shokri's attack get one ensemble of reference models per target, cached."""
    cfg = load_config_dict(
        tiny_config(
            cache_dir=str(tmp_path / "cache"),
            targets=[{"name": "natural", "regime": "natural"}],
            threat_model={"reference": "none", "reference_models": {"count": 4}},
            attacks=[
                {"name": "lira", "params": {"variance": "global"}},
                {"name": "rmia"},
                {"name": "shokri", "params": {"epochs": 20}},
            ],
        )
    )
    report = run_experiment(cfg, tmp_path / "run")
    (target,) = targets_of(report)
    assert target["reference_models"]["count"] == 4 and target["reference_models"]["online"]
    assert [a["name"] for a in target["attacks"]] == ["lira", "rmia", "shokri"]
    for attack in target["attacks"]:
        assert 0.0 <= attack["metrics"]["auc"] <= 1.0
        top = attack["exposed"][0]
        assert set(top) >= {"index", "label", "score", "fpr", "pixels"}
    assert "most exposed" in (tmp_path / "run" / "report.html").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("reference models should come from the cache")

    monkeypatch.setattr("privlab.training.ensembles.train_ensemble", no_training)
    again = run_experiment(cfg, tmp_path / "run2")
    assert targets_of(again)[0]["reference_models"]["cached"]


def test_online_attack_with_offline_reference_models_is_refused_up_front(tmp_path):
    cfg = load_config_dict(
        tiny_config(
            threat_model={"reference_models": {"count": 4, "online": False}},
            attacks=[{"name": "lira"}],
        )
    )
    with pytest.raises(ConfigError, match="online"):
        run_experiment(cfg, tmp_path)
