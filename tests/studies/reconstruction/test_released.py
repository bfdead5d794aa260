"""Reconstruction of a released model's own members from its weights, in an audit: the closed
form finds the members of a softmax regression trained to its optimum, loses to weights that
were perturbed (output perturbation), and says why it does not apply to other models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import privlab
from privlab.registry import DATASETS

WD = 1e-3


def _fit_to_optimum(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """A plain softmax regression at the optimum of mean CE + (WD/2)·‖θ‖² (bias included)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10)).double()
    opt = torch.optim.LBFGS(
        model.parameters(), max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        penalty = sum(p.pow(2).sum() for p in model.parameters())
        loss = nn.functional.cross_entropy(model(x.double()), y) + 0.5 * WD * penalty
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return model.float()


@pytest.fixture(scope="module")
def data():
    bundle = DATASETS.build("digits", seed=0)
    members, nonmembers = bundle.members.subset(range(200)), bundle.nonmembers.subset(range(200))
    return (members.x, members.y), (nonmembers.x, nonmembers.y)


def _audit(model: nn.Module, data, tmp_path, **kw):
    members, nonmembers = data
    return privlab.audit(
        model,
        members=members,
        nonmembers=nonmembers,
        access=["probs", "loss", "weights"],
        attacks=["loss_threshold"],
        out=tmp_path,
        **kw,
    )


def _closed(result) -> dict:
    run = result.report["studies"]["reconstruction"]["runs"][0]
    return run["released_model"]["closed_form"]


def test_members_of_a_softmax_regression_at_its_optimum_come_back(data, tmp_path):
    model = _fit_to_optimum(*data[0])
    result = _audit(model, data, tmp_path, recipe={"weight_decay": WD})
    closed = _closed(result)
    assert closed["applicable"] and closed["targets"] == 200
    assert closed["stationarity"] < 1e-4
    assert closed["success"] > 0.9 and closed["success_ci"][0] > 10 * closed["null"]
    assert closed["labels_correct"] > 0.9
    assert any("reconstruction from the released weights" in s for s in result.summary)
    assert (tmp_path / "report.html").read_text().count("its members reconstructed") == 1


def test_perturbed_weights_defeat_it(data, tmp_path):
    model = _fit_to_optimum(*data[0])
    with torch.no_grad():  # output perturbation: Gaussian noise on the released weights
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)))
    closed = _closed(_audit(model, data, tmp_path, recipe={"weight_decay": WD}))
    assert closed["applicable"]
    assert closed["success"] < 0.05


def test_another_model_is_not_applicable_and_no_weights_no_attempt(data, tmp_path):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    result = _audit(mlp, data, tmp_path / "mlp")
    closed = _closed(result)
    assert not closed["applicable"] and "one Linear layer" in closed["reason"]
    assert any("not applicable" in s for s in result.summary)
    members, nonmembers = data
    blind = privlab.audit(
        mlp, members=members, nonmembers=nonmembers, access="black-box", out=tmp_path / "bb"
    )
    assert "reconstruction" not in blind.report["studies"]
    assert any(s.startswith("reconstruction from weights: needs weights") for s in blind.skipped)
    assert np.isfinite(_closed(result).get("null", 0.0))
