"""How well a model-inversion attack reconstructed each class, judged by an evaluation model.

As in the AT-AT replication code: an *evaluation classifier* of a different architecture,
trained on the private data, labels every reconstruction (attack Acc@1 / Acc@5), and the
**KNN distance** is, for each reconstruction of class c, the squared L2 distance in the
evaluator's penultimate feature space to the nearest private training image of class c,
averaged over reconstructions (lower = closer to real private images = more leakage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.data.bundle import Split
from privlab.models.surgery import last_linear


@torch.no_grad()
def evaluator_outputs(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, penultimate features): the input of the model's last Linear layer."""
    model = model.to(device).eval()
    captured: list[torch.Tensor] = []
    hook = last_linear(model)[1].register_forward_hook(
        lambda _m, inp, _out: captured.append(inp[0].flatten(1).cpu())
    )
    try:
        logits = torch.cat([model(xb.to(device)).cpu() for xb in x.split(batch_size)])
    finally:
        hook.remove()
    return logits, torch.cat(captured)


def nearest_by_class(
    x: torch.Tensor,
    y: torch.Tensor,
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``x``: the ``distance`` (rows × pool matrix, on float64 inputs) to, and
    the index of, the nearest ``pool`` row of the same class; inf and −1 where the pool has
    none. Distances are float64."""
    dist = torch.full((len(y),), float("inf"), dtype=torch.float64)
    index = torch.full((len(y),), -1, dtype=torch.long)
    for c in y.unique():
        rows = (y == c).nonzero()[:, 0]
        pool = (pool_y == c).nonzero()[:, 0]
        if len(pool) == 0:
            continue
        best = distance(x[rows].double(), pool_x[pool].double()).min(dim=1)
        dist[rows] = best.values
        index[rows] = pool[best.indices]
    return dist, index


def nearest_private(
    features: torch.Tensor,
    labels: torch.Tensor,
    private_features: torch.Tensor,
    private_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row: squared L2 distance (float32) to, and index of, the nearest private row
    of its class."""
    dist, index = nearest_by_class(
        features, labels, private_features, private_labels, lambda a, b: torch.cdist(a, b).pow(2)
    )
    return dist.float(), index


def inversion_metrics(
    evaluator: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    private: Split,
    *,
    heldout: Split | None = None,
    num_classes: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Acc@1, Acc@5, KNN distance, per-class rates and each image's nearest private image.

    ``heldout``: unseen real images; their KNN distance to the training images is reported as
    a scale (what "as close as a real image of the class" means in this feature space).
    """
    if len(images) == 0:
        raise ValueError("no reconstructions to evaluate")
    logits, feats = evaluator_outputs(evaluator, images, device=device)
    _, private_feats = evaluator_outputs(evaluator, private.x, device=device)
    top = logits.topk(min(5, num_classes), dim=1).indices
    hit1 = (top[:, 0] == labels).numpy()
    hit5 = (top == labels[:, None]).any(1).numpy()
    dist, nearest = nearest_private(feats, labels, private_feats, private.y)
    # 1-NN oracle: the class of the nearest private image of any class (needs no evaluator head,
    # so it also judges models trained on permuted labels against their own training labels)
    overall = torch.cdist(feats.double(), private_feats.double()).argmin(1)
    nn_hit = (private.y[overall] == labels).numpy()
    conf = logits.softmax(1).gather(1, labels[:, None])[:, 0].numpy()
    classes = sorted(int(c) for c in labels.unique())
    lab = labels.numpy()
    out: dict[str, Any] = {
        "acc1": float(hit1.mean()),
        "acc5": float(hit5.mean()),
        "nn_acc1": float(nn_hit.mean()),
        "knn_dist": float(dist.mean()),
        "eval_confidence": float(conf.mean()),
        "per_class": {
            str(c): {
                "acc1": float(hit1[lab == c].mean()),
                "knn_dist": float(dist.numpy()[lab == c].mean()),
            }
            for c in classes
        },
        # a class counts as reconstructed when most of its images are recognised
        "classes_reconstructed": float(np.mean([hit1[lab == c].mean() > 0.5 for c in classes])),
        "nearest_private": nearest.tolist(),
        "image_knn_dist": dist.tolist(),
        "image_hit1": hit1.astype(bool).tolist(),
    }
    if heldout is not None and len(heldout):
        _, held_feats = evaluator_outputs(evaluator, heldout.x, device=device)
        mask = torch.isin(heldout.y, labels.unique())
        ref, _ = nearest_private(held_feats[mask], heldout.y[mask], private_feats, private.y)
        out["knn_dist_heldout"] = float(ref.mean())
    return out
