"""Shared fixtures: tiny data and fast settings so the suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privlab.config.schema import ExperimentHeader
from privlab.data.bundle import DataBundle
from privlab.registry import DATASETS
from privlab.threat_model import Knowledge, LabelledQueries, Target
from trained import leaky_model, reference_models, small_target


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Never touch the user's model cache from tests (session-wide, so module fixtures too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRIVLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        torch.set_num_threads(2)
        yield


@pytest.fixture(scope="session")
def tiny() -> DataBundle:
    """4 classes of noisy 8×8 prototypes, 120 members / 120 non-members / 120 population."""
    return DATASETS.build("synthetic", n=360, num_classes=4, noise=0.7, seed=0)


@pytest.fixture(scope="session")
def overfit(tiny: DataBundle) -> tuple[Target, Knowledge]:
    """A leaky target (small training set, many epochs), and what the attacker knows: a shadow
    model and eight reference models trained the same way."""
    target = small_target(leaky_model(tiny, tiny.members, epochs=60), tiny)
    half = len(tiny.population) // 2
    s_in, s_out = (
        tiny.population.subset(np.arange(half)),
        tiny.population.subset(np.arange(half, 2 * half)),
    )
    shadow = small_target(leaky_model(tiny, s_in, epochs=60, seed=1), tiny)
    return target, Knowledge(
        population=tiny.population,
        reference=(LabelledQueries(shadow, s_in, s_out, "shadow"),),
        reference_models=reference_models(tiny),
    )


HEADER_KEYS = tuple(ExperimentHeader.model_fields)


def tiny_config(**overrides: object) -> dict:
    """A complete, fast experiment config as plain data: a header and a ``targets:`` section.

    Header keys among ``overrides`` (name, seed, seeds, device, cache_dir, backend, …) go to
    the top level; every other key replaces the same key of the ``targets:`` section."""
    section: dict = {
        "data": {"name": "synthetic", "params": {"n": 240, "num_classes": 4, "noise": 0.4}},
        "model": {"name": "mlp", "params": {"hidden": [64]}},
        "train": {"epochs": 3, "batch_size": 32},
        "threat_model": {"reference": "shadow", "eps": 0.1},
        "targets": [
            {"name": "natural", "regime": "natural"},
            {"name": "pgd_at", "regime": {"name": "pgd_at", "params": {"eps": 0.1, "steps": 2}}},
        ],
        "attacks": [
            {"name": "confidence", "label": "I_B"},
            {"name": "adversarial_confidence", "label": "I_A", "params": {"steps": 2}},
        ],
        "evaluation": {"adv_steps": 2},
    }
    config: dict = {"name": "tiny"}
    for key, value in overrides.items():
        (config if key in HEADER_KEYS else section)[key] = value
    config["targets"] = section
    return config


def study_runs(report: dict, study: str = "targets") -> list[dict]:
    """One study's per-seed runs of a (schema 2) report."""
    return report["studies"][study]["runs"]


def targets_of(report: dict) -> list[dict]:
    """Every target entry of a report's targets study, seed after seed."""
    return [t for run in study_runs(report) for t in run["targets"]]


def data_of(report: dict, seed: int = 0) -> dict:
    """The data splits (sizes, hashes) of the targets study's run for ``seed``."""
    return next(run["data"] for run in study_runs(report) if run["seed"] == seed)


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny ops (thread start-up costs more than it saves)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    """scikit-learn's 8×8 digits in [0, 1] (members are in shuffled class order)."""
    return DATASETS.build("digits", seed=0)
