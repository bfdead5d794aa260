"""The canary audit's parts: canaries drawn from the population only and made recognisable,
coins of ½ per (run, canary), the bound each design uses, and a natural model's canary runs
exposing its canaries (a large bound) in one run and in several."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import targets_of, tiny_config
from privlab.config.schema import load_config_dict
from privlab.registry import DATASETS
from privlab.run.runner import run_experiment
from privlab.studies.targets.canary_audit import audit_bound, draw_canaries, inclusion_masks
from privlab.studies.targets.config import CanaryAuditConfig


@pytest.fixture(scope="module")
def bundle():
    return DATASETS.build("digits", seed=0)


def test_canaries_come_from_the_population_and_are_recognisable(bundle):
    cfg = CanaryAuditConfig(canaries=200)
    canaries = draw_canaries(cfg, bundle, seed=3)
    pop = {
        tuple(x.flatten().tolist()): int(y)
        for x, y in zip(bundle.population.x, bundle.population.y, strict=True)
    }
    true = [pop[tuple(x.flatten().tolist())] for x in canaries.x]  # every one a population image
    assert all(int(y) != t for y, t in zip(canaries.y, true, strict=True))  # all mislabelled
    assert len({tuple(x.flatten().tolist()) for x in canaries.x}) == 200  # no repeats
    ood = draw_canaries(CanaryAuditConfig(canaries=50, kind="ood"), bundle, seed=3)
    low, high = bundle.value_range
    assert (
        ood.x.min() >= low and ood.x.max() <= high and tuple(ood.x.shape[1:]) == bundle.input_shape
    )
    with pytest.raises(ValueError, match="need as many population examples"):
        draw_canaries(CanaryAuditConfig(canaries=len(bundle.population) + 1), bundle, seed=0)


def test_every_member_is_in_every_run_and_each_canary_flips_its_own_coin():
    masks = inclusion_masks(CanaryAuditConfig(canaries=4000, runs=3), members=10, seed=0)
    assert masks.shape == (3, 4010) and masks[:, :10].all()
    rate = masks[:, 10:].mean()
    assert abs(rate - 0.5) < 0.02 and not (masks[0, 10:] == masks[1, 10:]).all()


def test_one_canary_over_many_runs_uses_the_threshold_bound_else_the_one_run_bound():
    rng = np.random.default_rng(0)
    included = rng.random((400, 1)) < 0.5
    scores = included * 3.0 + rng.normal(size=(400, 1))
    many = audit_bound(CanaryAuditConfig(canaries=1, runs=400), scores, included, 1e-5)
    assert many["method"].startswith("many-run threshold") and many["epsilon"] > 0.5
    wide = np.tile(included.T, (2, 1)), np.tile(scores.T, (2, 1))
    one = audit_bound(CanaryAuditConfig(canaries=400, runs=2), wide[1], wide[0], 1e-5)
    assert one["method"].startswith("one-run") and one["inclusions"] == 800
    assert one["guesses"] == 2 * 80 and one["correct"] >= 0.9 * one["guesses"]


@pytest.mark.parametrize("runs", [1, 3])
def test_a_natural_models_canary_runs_expose_its_canaries(tmp_path, runs, monkeypatch):
    cfg = tiny_config(
        data={"name": "digits", "params": {"members": 0.2, "nonmembers": 0.2}},
        model={"name": "mlp", "params": {"hidden": [128]}},
        train={"epochs": 60, "batch_size": 64, "lr": 0.003},
        targets=[{"name": "natural", "regime": "natural"}],
        threat_model={"reference": "none"},
        attacks=[{"name": "loss_threshold", "label": "loss"}],
        dp_audit={"canaries": 150, "runs": runs, "guesses": 15},
        cache_dir=str(tmp_path / "cache"),
    )
    (t,) = targets_of(run_experiment(load_config_dict(cfg), tmp_path / "run"))
    audit = t["dp_audit"]
    from privlab.studies.targets import run as targets_run

    def no_retraining(*args, **kwargs):
        raise AssertionError("the canary runs were trained again")

    monkeypatch.setattr(targets_run, "run_canary_audit", no_retraining)
    (again,) = targets_of(run_experiment(load_config_dict(cfg), tmp_path / "run"))
    assert again["dp_audit"] == audit  # a state/ unit: a resumed run reads it
    assert audit["runs"] == runs and audit["inclusions"] == 150 * runs
    assert audit["claimed_epsilon"] is None and audit["white_box"] is None
    assert audit["epsilon"] > 1.0 and audit["correct"] >= 0.85 * audit["guesses"]
