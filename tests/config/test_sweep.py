"""The one sweep form, ``sweep: {parameter: [values]}``, on a target's regime, a membership
attack and a federated defence."""

from __future__ import annotations

from typing import Any

import pytest

from privlab.config import ConfigError, load_config_dict


def _config(targets: list[Any], attacks: list[Any] | None = None) -> dict[str, Any]:
    section = {"data": "digits", "model": "mlp", "targets": targets, "attacks": attacks or []}
    return {"name": "sweep", "targets": section}


def test_a_swept_regime_is_one_target_per_value() -> None:
    regime = {"name": "pgd_at", "params": {"steps": 3}, "sweep": {"eps": [0.01, 0.1]}}
    cfg = load_config_dict(
        _config([{"name": "pgd", "regime": regime}, {"name": "nat", "regime": "natural"}])
    )
    targets = cfg.section("targets").targets
    assert [t.name for t in targets] == ["pgd eps=0.01", "pgd eps=0.1", "nat"]
    assert [t.regime.params for t in targets[:2]] == [
        {"steps": 3, "eps": 0.01},
        {"steps": 3, "eps": 0.1},
    ]


def test_a_swept_attack_is_one_labelled_attack_per_value() -> None:
    attack = {"name": "adversarial_confidence", "label": "I_A", "sweep": {"steps": [5, 10]}}
    cfg = load_config_dict(_config([{"name": "nat", "regime": "natural"}], [attack]))
    attacks = cfg.section("targets").attacks
    assert [(a.display, a.params) for a in attacks] == [
        ("I_A steps=5", {"steps": 5}),
        ("I_A steps=10", {"steps": 10}),
    ]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"eps": [0.1], "steps": [2]}, "targets.0.regime: sweep takes exactly one parameter"),
        ({"eps": []}, "targets.0.regime: sweep.eps: give at least one value"),
        ({"steps": [2]}, "'steps' is both in params and swept"),
    ],
)
def test_a_bad_sweep_is_an_error_naming_where(sweep: dict[str, Any], message: str) -> None:
    regime = {"name": "pgd_at", "params": {"steps": 3}, "sweep": sweep}
    with pytest.raises(ConfigError, match=message):
        load_config_dict(_config([{"name": "pgd", "regime": regime}]))


def test_a_swept_defence_keeps_its_strengths_in_order() -> None:
    section = {
        "data": "digits",
        "model": {"name": "mlp", "params": {"hidden": [8]}},
        "attacks": [{"name": "inverting_gradients"}],
        "defences": [{"name": "pruning", "sweep": {"p": [0.5, 0.9]}}],
    }
    cfg = load_config_dict({"name": "gi", "gradient_inversion": section})
    (defence,) = cfg.section("gradient_inversion").defences
    assert defence.points() == [(0, {"p": 0.5}, "pruning p=0.5"), (1, {"p": 0.9}, "pruning p=0.9")]
