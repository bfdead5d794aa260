"""One attack contract, every family: each registered attack is a dataclass of its
hyperparameters, says which family it belongs to and what access it requires, has a docstring,
builds with its defaults, and refuses a target that does not grant what it requires, naming
the missing access, before doing any work."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from privlab.data.bundle import Split
from privlab.federated import client_update
from privlab.registry import ATTACKS
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo

FAMILIES = {"membership", "inversion", "gradient_inversion", "reconstruction"}
NAMES = ATTACKS.names()
SHAPE = (1, 8, 8)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def _target(access: Access) -> Target:
    return Target(_model(), TargetInfo("contract", 10, SHAPE), access)


def _attack_entry(attack: Any, target: Target) -> None:
    """The attack's entry point against ``target`` (the family's query of a target)."""
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2])
    if attack.family == "membership":
        attack.score(target, x, y)
    elif attack.family == "inversion":
        attack.invert(target, [0])
    elif attack.family == "gradient_inversion":
        attack.invert(target, client_update(_model(), x, y))
    elif attack.name == "closed_form_softmax":
        attack.reconstruct(target, Split(x, y))
    else:  # a learnt reconstructor applied to a released model; access is checked first
        attack.reconstruct(None, target)


def test_every_family_has_registered_attacks() -> None:
    assert {ATTACKS.get(n).family for n in NAMES} == FAMILIES


@pytest.mark.parametrize("name", NAMES)
def test_attack_declares_family_access_and_a_docstring(name: str) -> None:
    cls = ATTACKS.get(name)
    assert cls.name == name
    assert cls.family in FAMILIES
    assert isinstance(cls.requires, Access) and cls.requires != Access.NONE
    assert isinstance(cls.needs_reference, bool)
    assert isinstance(cls.needs_reference_models, bool)
    doc = cls.__dict__.get("__doc__") or ""
    # a dataclass without a docstring gets its signature as one
    assert doc.strip() and not doc.startswith(f"{cls.__name__}("), f"{name} has no docstring"
    assert ATTACKS.describe(name)


@pytest.mark.parametrize("name", NAMES)
def test_attack_builds_with_defaults_and_its_params_rebuild_it(name: str) -> None:
    attack = ATTACKS.build(name)
    assert dataclasses.is_dataclass(attack)
    params = attack.params()
    fields = {f.name for f in dataclasses.fields(attack) if not f.name.startswith("_")}
    assert set(params) == fields
    assert ATTACKS.build(name, **params).params() == params


@pytest.mark.parametrize("name", NAMES)
def test_attack_refuses_a_target_missing_any_access_it_requires(name: str) -> None:
    attack = ATTACKS.build(name)
    with pytest.raises(AccessDenied, match="needs access"):
        _attack_entry(attack, _target(Access.NONE))
    for flag in attack.requires:
        with pytest.raises(AccessDenied, match=rf"needs access \[.*'{flag.name.lower()}'"):
            _attack_entry(attack, _target(Access.all() & ~flag))
