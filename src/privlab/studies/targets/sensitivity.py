"""Leave-out sensitivity (Song et al. §5.2.1, Fig. 2): how much a training point's own
prediction confidence depends on its presence in the training set.

Each round removes one random member per class, retrains with the target's exact recipe and
seed, and records conf_original(x) − conf_retrained(x) = F(x)_y with the point minus F(x)_y
without it, for every removed point. The paper retrains 6 times (60 points on 10 classes) and
finds the robust model more sensitive than the natural one (K2.6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from privlab.attacks.membership.features import true_class_confidence
from privlab.data.bundle import Split

Retrain = Callable[[Split, int], nn.Module]  # (training data, round) → trained model


@torch.no_grad()
def _confidence(model: nn.Module, split: Split, device: torch.device) -> np.ndarray:
    probs = model.to(device).eval()(split.x.to(device)).double().softmax(dim=1)
    return true_class_confidence(probs, split.y).cpu().numpy()


def leave_out_sensitivity(
    original: nn.Module,
    members: Split,
    retrain: Retrain,
    *,
    rounds: int,
    seed: int,
    device: torch.device,
) -> dict[str, object]:
    """Sensitivities of ``rounds`` × (one member per class), sorted ascending as in Fig. 2."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    rng = np.random.default_rng(seed + 99)
    labels = members.y.numpy()
    values: list[float] = []
    for r in range(rounds):
        removed = np.array([rng.choice(np.flatnonzero(labels == c)) for c in np.unique(labels)])
        kept = np.setdiff1d(np.arange(len(labels)), removed)
        retrained = retrain(members.subset(kept), r)
        out = members.subset(removed)
        delta = _confidence(original, out, device) - _confidence(retrained, out, device)
        values.extend(delta.tolist())
    arr = np.sort(np.asarray(values))
    return {
        "rounds": rounds,
        "values": arr.tolist(),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "mean_abs": float(np.abs(arr).mean()),
    }
