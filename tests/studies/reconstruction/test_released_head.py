"""The weak adversary on a released head over frozen features, in an audit: a head trained on
four members (one per class) by plain full-batch SGD gives its members back more often than
null weights do, heavy noise on the head's weights stops it, and a model it does not fit is
reported as not applicable with the reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import privlab

SPEC = {"lr": 0.05, "epochs": 30, "weight_decay": 0.0, "sigma_init": 0.002}
ATTACK = {
    "module": "3",
    "train": SPEC,
    "shadows": 3000,
    "val_shadows": 200,
    "shard_size": 1000,
    "prior_split": 0.5,
    "reconstructor": {"kind": "mlp", "width": 128, "lr": 3e-3, "epochs": 12, "eval_every": 200},
}


def _images(seed: int, n: int, classes: int = 4, side: int = 6):
    """A class prototype plus a per-image style, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, 1, side, side, generator=torch.Generator().manual_seed(99))
    labels = torch.arange(n) % classes
    images = (protos[labels] + 0.3 * torch.randn(n, 1, side, side, generator=gen)).clamp(0, 1)
    return images, labels


def _released(members: tuple[torch.Tensor, torch.Tensor]) -> nn.Sequential:
    """Frozen random features (a fixed projection and ReLU) and a head trained on the members
    by full-batch SGD as SPEC says."""
    torch.manual_seed(0)
    body = nn.Linear(36, 24, bias=False)
    head = nn.Linear(24, 4)
    nn.init.normal_(head.weight, std=SPEC["sigma_init"])
    nn.init.zeros_(head.bias)
    model = nn.Sequential(nn.Flatten(), body, nn.ReLU(), head)
    x, y = members
    feats = model[:3](x).detach()
    opt = torch.optim.SGD(head.parameters(), lr=SPEC["lr"], weight_decay=SPEC["weight_decay"])
    for _ in range(SPEC["epochs"]):
        opt.zero_grad()
        nn.functional.cross_entropy(head(feats), y).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def data():
    return {"members": _images(1, 4), "nonmembers": _images(2, 40), "population": _images(0, 800)}


def _weak(model: nn.Module, data: dict, tmp_path, head: dict = ATTACK) -> dict:
    result = privlab.audit(
        model,
        **data,
        access=["probs", "weights"],
        attacks=["loss_threshold"],
        recipe={"head": head},
        out=tmp_path,
    )
    run = result.report["studies"]["reconstruction"]["runs"][0]
    return run["released_model"] | {"summary": result.summary}


def test_a_released_head_gives_its_members_back(data, tmp_path):
    released = _weak(_released(data["members"]), data, tmp_path)
    weak = released["weak_adversary"]
    assert weak["applicable"], weak.get("reason")
    assert not released["closed_form"]["applicable"]  # not a softmax regression on the inputs
    assert weak["tpr"] > weak["fpr"] + 0.15  # on heads trained like it
    # 3 of its 4 classes here; null weights would match ~0.8 of them (FPR* ≈ 0.2)
    assert weak["released"]["reconstructed"] >= 2
    assert max(weak["released"]["mse"]) < 2 * weak["tau"]
    assert any(s.startswith("weak adversary on the released head: ") for s in released["summary"])


def test_noise_on_the_head_stops_it(data, tmp_path):
    model = _released(data["members"])
    with torch.no_grad():
        model[3].weight.add_(torch.randn(4, 24, generator=torch.Generator().manual_seed(3)))
    weak = _weak(model, data, tmp_path)["weak_adversary"]
    assert weak["released"]["reconstructed"] == 0
    assert min(weak["released"]["mse"]) > 2 * weak["tau"]


def test_what_it_does_not_fit_is_named(data, tmp_path):
    model = _released(data["members"])
    weak = _weak(model, data, tmp_path / "a", {**ATTACK, "module": "fc"})["weak_adversary"]
    assert not weak["applicable"] and "has no module 'fc'" in weak["reason"]
    weak = _weak(model, data, tmp_path / "b", {**ATTACK, "module": "1"})["weak_adversary"]
    assert not weak["applicable"] and "without bias" in weak["reason"]
    unbalanced = data | {"members": (data["members"][0][:3], data["members"][1][:3])}
    weak = _weak(model, unbalanced, tmp_path / "c")["weak_adversary"]
    assert not weak["applicable"] and "class counts are [1, 1, 1, 0]" in weak["reason"]
