"""A target's utility: clean, adversarial (PGD) and verified accuracy on its members and
non-members (Song et al. §3.4)."""

from __future__ import annotations

from typing import Any

import torch

from privlab.data.bundle import DataBundle
from privlab.metrics.utility import accuracy, adversarial_accuracy, verified_accuracy
from privlab.studies.targets.config import EvaluationConfig
from privlab.threat_model import TargetInfo
from privlab.verify import UnsupportedLayerError


def verified(
    model: torch.nn.Module, info: TargetInfo, bundle: DataBundle, device: torch.device
) -> dict[str, float | None]:
    """Verified train/test accuracy with the model's own training verifier (IBP for the
    others); None where the verifier cannot bound the model."""
    assert info.eps is not None
    try:
        return {
            f"ver_{name}_acc": verified_accuracy(
                model,
                split.x,
                split.y,
                eps=info.eps,
                clip=info.value_range,
                verifier=info.verifier or "ibp",
                device=device,
            )
            for name, split in (("train", bundle.members), ("test", bundle.nonmembers))
        }
    except UnsupportedLayerError:
        return {"ver_train_acc": None, "ver_test_acc": None}


def target_utility(
    model: torch.nn.Module,
    info: TargetInfo,
    bundle: DataBundle,
    evaluation: EvaluationConfig,
    device: torch.device,
) -> dict[str, float | None]:
    """Clean accuracy, and with a budget (``info.eps``) and ``adv_steps`` the PGD and verified
    accuracies, of members (train) and non-members (test)."""
    members, nonmembers = bundle.members, bundle.nonmembers
    out: dict[str, float | None] = {
        "train_acc": accuracy(model, members.x, members.y, device=device),
        "test_acc": accuracy(model, nonmembers.x, nonmembers.y, device=device),
        "adv_train_acc": None,
        "adv_test_acc": None,
    }
    if info.eps and evaluation.adv_steps > 0:
        kw: dict[str, Any] = dict(
            eps=info.eps,
            steps=evaluation.adv_steps,
            step_size=evaluation.adv_step_size,
            norm=info.norm,
            clip=info.value_range,
            device=device,
        )
        out["adv_train_acc"] = adversarial_accuracy(model, members.x, members.y, **kw)
        out["adv_test_acc"] = adversarial_accuracy(model, nonmembers.x, nonmembers.y, **kw)
        out.update(verified(model, info, bundle, device))
    return out
