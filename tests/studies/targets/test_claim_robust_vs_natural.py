"""Song, Shokri & Mittal (CCS 2019) K2.1/K2.2 on a small config: a PGD-trained model that fits
its adversarial training set leaks more membership than a natural one, and on it the
adversarial-example attack I_A beats the benign attack I_B (on the natural one its gain over
I_B is much smaller)."""

import pytest

from conftest import targets_of
from privlab.config import load_config_dict
from privlab.run.runner import run_experiment


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = load_config_dict(
        {
            "name": "claim",
            "targets": {
                "data": {"name": "digits"},
                "model": {"name": "mlp", "params": {"hidden": [256, 256]}},
                "train": {"epochs": 60, "batch_size": 64},
                "threat_model": {"reference": "none", "eps": 0.1},
                "targets": [
                    {"name": "natural", "regime": "natural"},
                    {
                        "name": "pgd_at",
                        "regime": {"name": "pgd_at", "params": {"eps": 0.1, "steps": 5}},
                    },
                ],
                "attacks": [
                    {"name": "confidence", "label": "I_B"},
                    {"name": "adversarial_confidence", "label": "I_A", "params": {"steps": 10}},
                ],
                "evaluation": {"adv_steps": 10},
            },
        }
    )
    return run_experiment(config, tmp_path_factory.mktemp("claim"))


def _adv(report, target, attack):
    t = next(t for t in targets_of(report) if t["name"] == target)
    return next(a for a in t["attacks"] if a["label"] == attack)["metrics"]["advantage"]


def test_robust_model_fits_its_adversarial_training_set(report):
    pgd = next(t for t in targets_of(report) if t["name"] == "pgd_at")["utility"]
    nat = next(t for t in targets_of(report) if t["name"] == "natural")["utility"]
    assert pgd["adv_train_acc"] > 0.9 > nat["adv_train_acc"]
    assert pgd["adv_train_acc"] - pgd["adv_test_acc"] > 0.1  # the robust generalisation gap


def test_robust_training_raises_the_membership_advantage(report):
    natural = max(_adv(report, "natural", "I_B"), _adv(report, "natural", "I_A"))
    assert _adv(report, "pgd_at", "I_A") > natural + 0.03


def test_adversarial_attack_gains_over_benign_mostly_on_the_robust_model(report):
    gain_robust = _adv(report, "pgd_at", "I_A") - _adv(report, "pgd_at", "I_B")
    gain_natural = _adv(report, "natural", "I_A") - _adv(report, "natural", "I_B")
    assert gain_robust > 0.02
    assert gain_robust > gain_natural + 0.02
