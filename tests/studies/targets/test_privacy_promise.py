"""The privacy promise checked (issue: DP auditing): a correct DP-SGD target never gets a
lower bound above its accountant's ε, a deliberately broken one (noise ten times too small,
no clipping: built here) does, and a non-private model gets a large one; the report says so."""

from __future__ import annotations

import pytest

from conftest import targets_of
from privlab.config.schema import load_config_dict
from privlab.registry import STUDIES
from privlab.run.runner import run_experiment
from privlab.training import dp

DP = {"name": "dp_sgd", "params": {"noise_multiplier": 2.0, "max_grad_norm": 1.0, "delta": 1e-5}}


def _config(tmp_path, seeds, targets, training_runs=0):
    return load_config_dict(
        {
            "name": "promise",
            "seeds": seeds,
            "cache_dir": str(tmp_path / "cache"),
            "targets": {
                "data": {"name": "digits", "params": {"members": 0.25, "nonmembers": 0.25}},
                "model": {"name": "mlp", "params": {"hidden": [64]}},
                "train": {"epochs": 15, "batch_size": 50, "optimizer": "sgd", "lr": 0.5},
                "threat_model": {"reference": "none"},
                "targets": targets,
                "attacks": [{"name": "loss_threshold", "label": "loss"}],
                "dp_audit": {
                    "canaries": 200,
                    "guesses": 20,
                    "gradient_runs": 1000,
                    "training_runs": training_runs,
                },
            },
        }
    )


def _audits(report):
    return {t["name"]: t for t in targets_of(report)}


def test_a_correct_dp_target_never_proves_more_than_its_accountant_and_a_natural_one_leaks(
    tmp_path,
):
    fit = {"optimizer": "adam", "lr": 0.003, "epochs": 60}  # fits its canaries
    targets = [{"name": "dp", "regime": DP}, {"name": "natural", "regime": "natural", "train": fit}]
    report = run_experiment(_config(tmp_path, [0, 1, 2], targets, 40), tmp_path / "run")
    by_name = _audits(report)
    for seed in (0, 1, 2):
        t = by_name[f"dp/seed{seed}"]
        claimed = t["privacy"]["epsilon"]
        audit = t["dp_audit"]
        assert audit["epsilon"] <= claimed and audit["white_box"]["epsilon"] <= claimed
        assert audit["in_training"]["runs"] == 40 and not audit["in_training"]["violated"]
        assert audit["claimed_epsilon"] is not None and not audit["violated"]
        natural = by_name[f"natural/seed{seed}"]["dp_audit"]
        assert natural["claimed_epsilon"] is None and natural["white_box"] is None
        assert natural["in_training"] is None  # not a DP-SGD recipe
        assert natural["epsilon"] > 1.5  # mislabelled canaries memorised: far from private
    lines = STUDIES.get("targets")().headline(report, report["studies"]["targets"])
    assert any(line.startswith("dp: consistent: claimed ε") for line in lines)
    assert any("natural: no DP claim: behaves no better than ε ≥" in line for line in lines)


@pytest.mark.parametrize("bug", ["noise ten times too small", "no clipping"])
def test_a_broken_dp_sgd_is_caught_by_the_audit(tmp_path, monkeypatch, bug):
    if bug == "no clipping":
        clipped_sum = dp.clipped_sum
        monkeypatch.setattr(dp, "clipped_sum", lambda g, c, **kw: clipped_sum(g, 1e9, **kw))
    else:
        add_noise = dp.add_noise
        monkeypatch.setattr(dp, "add_noise", lambda s, std, g: add_noise(s, std / 10, g))
    report = run_experiment(_config(tmp_path, [0], [{"name": "dp", "regime": DP}]), tmp_path)
    (t,) = targets_of(report)
    white = t["dp_audit"]["white_box"]
    assert white["violated"] and white["epsilon"] > t["privacy"]["epsilon"]
    lines = STUDIES.get("targets")().headline(report, report["studies"]["targets"])
    assert any(line.startswith("dp: PROMISE BROKEN") for line in lines)
