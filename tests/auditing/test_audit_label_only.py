"""An audit of a model whose owner reveals only its predicted labels (`--access labels`): the
plan picks the label-only attacks (gap, decision-boundary distance, augmentation robustness)
and nothing that needs more, they run end to end through the CLI and the API, and a leaky
model is caught by them; with scores granted they are left out unless asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import privlab
from digits_audit import digits_arrays, fit_digits
from privlab.auditing.plan import AuditPlan, membership_attacks
from privlab.cli import app
from privlab.registry import ATTACKS
from privlab.threat_model import Access

LABEL_ONLY = {"gap", "boundary_distance", "augmentation_labels"}
SHOWN = {"gap (label-only)", "boundary (label-only)", "augmentation (label-only)"}
NET = """
from torch import nn


def Net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
"""


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return digits_arrays()


def _attacks(report: dict) -> dict[str, dict]:
    (target,) = report["studies"]["targets"]["runs"][0]["targets"]
    return {a["label"]: a for a in target["attacks"]}


def test_the_plan_for_labels_access_is_the_label_only_attacks() -> None:
    chosen, skipped = membership_attacks(
        AuditPlan("net.py:Net", "m.npz", "n.npz", access=["labels"])
    )
    assert {a["name"] for a in chosen} == LABEL_ONLY
    assert {a["label"] for a in chosen} == SHOWN
    membership = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "membership"]
    for name in set(membership) - LABEL_ONLY:  # every other attack, with the access it lacks
        assert any(s.startswith(f"{name}: needs access") for s in skipped), name
    assert all(ATTACKS.get(a["name"]).requires == Access.LABELS for a in chosen)


def test_with_scores_granted_label_only_attacks_run_only_when_named() -> None:
    base = {"model": "net.py:Net", "members": "m.npz", "nonmembers": "n.npz"}
    chosen, skipped = membership_attacks(AuditPlan(**base, access=["black-box"]))
    assert not {a["name"] for a in chosen} & LABEL_ONLY
    assert any(s.startswith("boundary_distance: label-only") for s in skipped)
    chosen, _ = membership_attacks(
        AuditPlan(**base, access=["black-box"], attacks=["gap", "boundary_distance"])
    )
    assert [a["label"] for a in chosen] == ["gap (label-only)", "boundary (label-only)"]


def test_named_attacks_of_which_none_can_run_are_refused_with_the_reasons() -> None:
    base = {"model": "net.py:Net", "members": "m.npz", "nonmembers": "n.npz"}
    with pytest.raises(ValueError, match=r"none of the attacks .* lira: it trains models") as err:
        membership_attacks(AuditPlan(**base, attacks=["lira", "mi_face"]))
    assert "mi_face: not a membership attack" in str(err.value)
    chosen, skipped = membership_attacks(AuditPlan(**base, attacks=["lira", "loss_threshold"]))
    assert [a["name"] for a in chosen] == ["loss_threshold"] and skipped[0].startswith("lira")


def test_api_audit_with_labels_access_runs_the_label_only_attacks(digits: dict) -> None:
    model = fit_digits(*digits["members"])
    result = privlab.audit(
        model, members=digits["members"], nonmembers=digits["nonmembers"], access="labels"
    )
    attacks = _attacks(result.report)
    assert set(attacks) == SHOWN  # and nothing that needs more than labels
    assert {a["name"] for a in result.attacks} == LABEL_ONLY
    assert any(s.startswith("loss_threshold: needs access") for s in result.skipped)
    assert any(s.startswith("model inversion: needs logits") for s in result.skipped)
    # 120 overfit members vs 300 non-members: chance is 0.5 ± 0.03
    assert attacks["boundary (label-only)"]["metrics"]["auc"] > 0.6
    assert attacks["gap (label-only)"]["metrics"]["honest"]["source"] == "attack"
    assert any("membership advantage" in line for line in result.summary)
    assert result.most_exposed(3)


def test_cli_audit_with_labels_access(digits: dict, tmp_path: Path) -> None:
    model = fit_digits(*digits["members"])
    (tmp_path / "net.py").write_text(NET)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp_path / "w.safetensors")
    for name in ("members", "nonmembers"):
        x, y = digits[name]
        np.savez(tmp_path / f"{name}.npz", x=x[:60].numpy(), y=y[:60].numpy())
    args = [
        "audit", "--model", f"{tmp_path / 'net.py'}:Net", "--weights", str(tmp_path / "w.safetensors"),
        "--members", str(tmp_path / "members.npz"), "--nonmembers", str(tmp_path / "nonmembers.npz"),
        "--access", "labels", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skipped loss_threshold: needs access ['probs']" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(_attacks(report)) == SHOWN
    assert report["studies"]["targets"]["runs"][0]["targets"][0]["attacks"][0]["params"]
