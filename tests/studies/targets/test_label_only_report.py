"""The report sets the label-only boundary attack beside Song et al.'s I_A on the same target."""

from __future__ import annotations

from conftest import targets_of, tiny_config
from privlab.config.schema import load_config_dict
from privlab.registry import STUDIES
from privlab.run.runner import run_experiment


def test_the_headline_compares_the_boundary_attack_with_i_a(tmp_path):
    cfg = tiny_config(
        targets=[{"name": "natural", "regime": "natural"}],
        threat_model={"reference": "none", "access": ["labels", "probs", "input_gradients"]},
        attacks=[
            {"name": "adversarial_confidence", "label": "I_A", "params": {"steps": 2}},
            {"name": "boundary_distance", "label": "boundary", "params": {"iterations": 2}},
        ],
        cache_dir=str(tmp_path / "cache"),
    )
    report = run_experiment(load_config_dict(cfg), tmp_path / "run")
    (target,) = targets_of(report)
    aucs = {a["name"]: a["metrics"]["auc"] for a in target["attacks"]}
    lines = STUDIES.get("targets")().headline(report, report["studies"]["targets"])
    expected = (
        f"natural: the label-only boundary attack reaches AUC {aucs['boundary_distance']:.3f} "
        f"against I_A's {aucs['adversarial_confidence']:.3f}"
    )
    assert any(line.startswith(expected) for line in lines)
