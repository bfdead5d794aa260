"""An audit of a model privlab did not train, end to end: the CLI (`privlab audit`) and the
API (`privlab.auditing`) on a leaky model and on a model that never saw the "members", the user's
model left untouched, attacks left out with a reason, and reference models from a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import privlab
from digits_audit import digits_arrays, digits_net, fit_digits
from privlab.cli import app
from privlab.registry import DATASETS

NET = """
from torch import nn


def Net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
"""


_net = digits_net


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return digits_arrays()


def _auc(report: dict, label: str) -> float:
    (target,) = report["studies"]["targets"]["runs"][0]["targets"]
    return next(a["metrics"]["auc"] for a in target["attacks"] if a["label"] == label)


def test_cli_audit_of_a_leaky_model(digits: dict, tmp_path: Path) -> None:
    model = fit_digits(*digits["members"])
    (tmp_path / "net.py").write_text(NET)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    for name in ("members", "nonmembers"):
        x, y = digits[name]
        np.savez(tmp_path / f"{name}.npz", x=x.numpy(), y=y.numpy())
    args = [
        "audit", "--model", f"{tmp_path / 'net.py'}:Net", "--weights", str(tmp_path / "w.safetensors"),
        "--members", str(tmp_path / "members.npz"), "--nonmembers", str(tmp_path / "nonmembers.npz"),
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skipped lira: it trains models like yours" in result.output
    assert "membership advantage" in result.output  # the headline
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert _auc(report, "loss") > 0.7  # an overfit model leaks its members
    assert "What leaks" in (tmp_path / "out" / "report.html").read_text()


def test_cli_audit_refuses_a_weights_file_that_does_not_fit(digits: dict, tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(NET)
    save_file({"1.weight": torch.zeros(3, 3)}, tmp_path / "bad.safetensors")
    x, y = digits["members"]
    np.savez(tmp_path / "m.npz", x=x.numpy(), y=y.numpy())
    result = CliRunner().invoke(app, [
        "audit", "--model", f"{tmp_path / 'net.py'}:Net", "--weights", str(tmp_path / "bad.safetensors"),
        "--members", str(tmp_path / "m.npz"), "--nonmembers", str(tmp_path / "m.npz"),
        "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 2
    assert "error:" in result.output and "1.weight" in result.output


def test_api_audit_leaves_the_model_alone_and_reads_like_the_cli(
    digits: dict, tmp_path: Path
) -> None:
    model = fit_digits(*digits["members"]).train()
    model[1].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = privlab.audit(model, members=digits["members"], nonmembers=digits["nonmembers"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and not model[1].weight.requires_grad and model[3].weight.requires_grad
    assert any("membership advantage" in line for line in result.summary)
    exposed = result.most_exposed(5)
    assert len(exposed) == 5 and all(0 <= r["index"] < len(digits["members"][1]) for r in exposed)
    assert any(s.startswith("lira") for s in result.skipped)
    assert result.save(tmp_path / "saved").is_file()


def test_an_audit_of_a_model_that_never_saw_the_members_finds_nothing(digits: dict) -> None:
    model = fit_digits(*digits["population"])  # "members" are as unseen as the non-members
    result = privlab.audit(model, members=digits["members"], nonmembers=digits["nonmembers"])
    assert abs(_auc(result.report, "loss") - 0.5) < 0.06


def test_a_recipe_and_population_give_lira_with_reference_models(
    digits: dict, tmp_path: Path
) -> None:
    model = fit_digits(*digits["members"])
    recipe = {"epochs": 40, "lr": 0.003, "batch_size": 64}
    result = privlab.audit(
        model,
        members=digits["members"],
        nonmembers=digits["nonmembers"],
        population=digits["population"],
        attacks=["lira", "loss_threshold"],
        recipe=recipe,
        out=tmp_path / "a",
    )
    assert not any(s.startswith(("lira", "loss_threshold")) for s in result.skipped)
    assert _auc(result.report, "lira (online)") > 0.6
    # offline LiRA from the same reference models: only those each candidate is OUT of
    assert _auc(result.report, "lira (offline)") > 0.55
    html = result.save(tmp_path / "saved")
    assert html.is_file() and (tmp_path / "saved" / "report.json").is_file()


def test_the_plan_adds_model_inversion_only_where_access_and_data_allow(
    digits: dict, tmp_path: Path
) -> None:
    from privlab.auditing.plan import AuditPlan, audit_config

    x, y = digits["members"]
    np.savez(tmp_path / "m.npz", x=x.numpy(), y=y.numpy())
    base = {"model": "net.py:Net", "members": str(tmp_path / "m.npz"), "nonmembers": "n.npz"}
    white = AuditPlan(**base, access=["white-box"], population="p.npz")
    data, skipped = audit_config(white)
    assert [a["name"] for a in data["targets"]["inversion"]["attacks"]] == ["mi_face", "ppa"]
    assert {a["label"] for a in data["targets"]["attacks"]} >= {"loss", "I_B", "I_A"}
    data, skipped = audit_config(AuditPlan(**base, access=["black-box"]))
    assert "inversion" not in data["targets"]
    assert any(s.startswith("model inversion: needs logits and input_gradients") for s in skipped)
    assert any(s.startswith("I_A") or s.startswith("adversarial_confidence") for s in skipped)


def test_a_white_box_audit_inverts_client_updates_and_a_defence_stops_it(digits: dict) -> None:
    result = privlab.audit(
        _net(),  # the first round of federated training: the model at its initialisation
        members=digits["members"],
        nonmembers=digits["nonmembers"],
        access="white-box",
        attacks=["loss_threshold"],
        defences=[{"name": "pruning", "params": {"p": 0.99}}],
    )
    (run,) = result.report["studies"]["gradient_inversion"]["runs"]
    psnr = {p["label"]: p["best"]["psnr"] for p in run["settings"][0]["points"]}
    assert psnr["none"] > 25  # the server recovers the clients' digits
    assert psnr["pruning"] < psnr["none"] - 10  # 99 % pruning makes them unrecognisable
    (points,) = [line for line in result.summary if line.startswith("client B=4: ")]
    assert "none: " in points and "(high leakage); pruning" in points
    assert not points.endswith("(high leakage)")  # the defended point reads milder
    assert any(line.startswith("client B=4, none: high leakage") for line in result.summary)


def test_an_audit_of_a_tabular_model_on_adult() -> None:
    bundle = DATASETS.build("adult", seed=0)
    members, nonmembers = bundle.members.subset(range(1000)), bundle.nonmembers.subset(range(1000))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(bundle.input_shape[0], 256), nn.ReLU(), nn.Linear(256, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):  # overfits 1,000 rows: a leaky tabular model
        opt.zero_grad()
        nn.functional.cross_entropy(model(members.x), members.y).backward()
        opt.step()
    result = privlab.audit(
        model,
        members=(members.x, members.y),
        nonmembers=(nonmembers.x, nonmembers.y),
        feature_names=bundle.feature_names,
    )
    assert _auc(result.report, "loss") > 0.56  # chance: 0.5 ± 0.013 (1,000 vs 1,000)
    assert any("model inversion: needs logits" in s for s in result.skipped)
    exposed = result.most_exposed(3)
    assert len(exposed) == 3
    # named rows: one-hot groups decoded back to their attribute
    row = members.x[exposed[0]["index"]]
    named = zip(bundle.feature_names, row.tolist(), strict=True)
    sex = next(n for n, v in named if n.startswith("sex=") and v == 1)
    assert exposed[0]["features"]["sex"] == sex.removeprefix("sex=")
    with pytest.raises(Exception, match="3 feature names for inputs of shape"):
        privlab.audit(
            model,
            members=(members.x, members.y),
            nonmembers=(nonmembers.x, nonmembers.y),
            feature_names=["a", "b", "c"],
        )
