"""The audit's plan: federated defences from ``--defence``, reconstruction from weights only
with the weights, and a malformed option as one error line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from privlab.auditing.plan import AuditPlan, audit_config, parse_defence
from privlab.cli import app


def test_parse_defence_forms() -> None:
    assert parse_defence("none") == {"name": "none"}
    assert parse_defence("pruning:p=[0.5, 0.9]") == {"name": "pruning", "sweep": {"p": [0.5, 0.9]}}
    assert parse_defence("dp:clip=1,noise_multiplier=0.1") == {
        "name": "dp",
        "params": {"clip": 1, "noise_multiplier": 0.1},
        "label": "dp clip=1 noise_multiplier=0.1",
    }
    for bad in ("pruning:p", "pruning:p=0.5,,", "gaussian:=1"):
        with pytest.raises(ValueError, match="NAME:PARAM=VALUE"):
            parse_defence(bad)


@pytest.fixture
def members(tmp_path: Path) -> str:
    np.savez(tmp_path / "m.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.arange(4))
    return str(tmp_path / "m.npz")


def test_the_plan_compares_the_defences_and_reconstructs_only_with_weights(members: str) -> None:
    base = {"model": "net.py:Net", "members": members, "nonmembers": members}
    defences = ["none", parse_defence("pruning:p=[0.5,0.9]"), parse_defence("gaussian:std=0.1")]
    data, _ = audit_config(AuditPlan(**base, access=["white-box"], defences=defences))
    assert [
        d if isinstance(d, str) else d["name"] for d in data["gradient_inversion"]["defences"]
    ] == [
        "none",
        "pruning",
        "gaussian",
    ]
    released = data["reconstruction"]["released_model"]
    assert released["model"]["params"] == {"spec": "net.py:Net", "given": True}
    assert released["l2"] == 0.0
    plan = AuditPlan(**base, access=["weights"], recipe={"weight_decay": 0.01})
    assert audit_config(plan)[0]["reconstruction"]["released_model"]["l2"] == 0.01
    data, skipped = audit_config(AuditPlan(**base, access=["black-box"]))
    assert "reconstruction" not in data
    assert "reconstruction from weights: needs weights (--access white-box)" in skipped


def test_cli_a_malformed_defence_is_one_error_line(members: str, tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("from torch import nn\nNet = lambda: nn.Flatten()\n")
    args = [
        "audit", "--model", f"{tmp_path / 'net.py'}:Net", "--members", members,
        "--nonmembers", members, "--access", "white-box", "--defence", "pruning:p",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.count("\n") <= 2 and "--defence 'pruning:p'" in result.output
    assert not (tmp_path / "out").exists()
