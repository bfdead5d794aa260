"""Contract tests over every registry (datasets, models, regimes, attacks, defences, studies):
every entry is documented for ``privlab list``, builds with its defaults, and a typo in its
parameters is an error that names them. The per-family behaviour contracts live beside the
families (tests/training/test_contract_regimes.py, tests/attacks/test_attack_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import BaseModel

from privlab.registry import (
    ATTACKS,
    DATASETS,
    DEFENCES,
    MODELS,
    REGIMES,
    REGISTRIES,
    STUDIES,
    Registry,
)
from privlab.studies.base import Study

ENTRIES = [(r.kind, name) for r in REGISTRIES for name in r.names()]
BY_KIND = {r.kind: r for r in REGISTRIES}
#: datasets that read the user's files (they need a path): built in tests/data/
FILE_DATASETS = {"mnist_idx", "fashion_mnist_idx", "cifar10", "image_folder", "user_files"}
#: models built from the user's own file (tests/audit/)
FILE_MODELS = {"user_model"}


def test_there_are_six_registries() -> None:
    assert [r.kind for r in REGISTRIES] == [
        "dataset", "model", "regime", "attack", "defence", "study"
    ]  # fmt: skip
    assert all(len(r.names()) > 0 for r in REGISTRIES)


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_every_entry_is_documented(kind: str, name: str) -> None:
    text = BY_KIND[kind].describe(name)
    assert len(text) > 15, f"{kind} {name!r} needs a docstring for `privlab list`"


def _build(registry: Registry[Any], name: str) -> Any:
    if registry is DATASETS:
        return registry.build(name, seed=0)
    if registry is MODELS:
        return registry.build(name, input_shape=(1, 28, 28), num_classes=10)
    return registry.build(name)


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_every_entry_builds_with_its_defaults(kind: str, name: str) -> None:
    if (kind == "dataset" and name in FILE_DATASETS) or (kind == "model" and name in FILE_MODELS):
        pytest.skip("reads the user's files: tests/data/ and tests/auditing/")
    built = _build(BY_KIND[kind], name)
    if kind == "model":
        assert isinstance(built, torch.nn.Module)
    elif kind == "study":
        assert isinstance(built, Study) and built.name == name
        assert issubclass(built.section, BaseModel) and built.title
    elif kind in ("attack", "defence", "regime"):
        assert hasattr(built, "params") or hasattr(built, "requires")


@pytest.mark.parametrize(
    ("registry", "name"),
    [
        (REGIMES, "pgd_at"),
        (ATTACKS, "lira"),
        (DEFENCES, "pruning"),
        (ATTACKS, "inverting_gradients"),
    ],
)
def test_a_parameter_typo_is_an_error_naming_the_component(
    registry: Registry[Any], name: str
) -> None:
    with pytest.raises(TypeError) as err:
        registry.build(name, no_such_parameter=1)
    assert name in str(err.value) and "no_such_parameter" in str(err.value)


def test_defences_keep_the_observation_shape() -> None:
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    )
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 2, 1, 1])
    gen = torch.Generator().manual_seed(0)
    for name in DEFENCES.names():
        defence = DEFENCES.build(name)
        obs = defence.apply(model, x, y, generator=gen, local_steps=1, lr=0.1, local_batch=None)
        shapes = {k: tuple(v.shape) for k, v in obs.gradients.items()}
        assert shapes == {k: tuple(p.shape) for k, p in model.named_parameters()}, name


def test_studies_have_distinct_sections() -> None:
    sections = [STUDIES.build(n).section for n in STUDIES.names()]
    assert len(set(sections)) == len(sections)
