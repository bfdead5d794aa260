"""How well a fitted weak-adversary reconstructor does, as a hypothesis test (Maciazek &
Allison): on each validation head and class c, the reconstruction is a true positive when it
lies within τ (MSE) of one of the head's class-c training images; false positives compare
reconstructions from *null* weights, drawn from N(θ̄, Cov_θ) of the shadow heads (the paper's
way), with the same images. Also the held-out (another head's images) and prior-draw (a random
image of the class) baselines. Shards are read one at a time: memory stays bounded by the shard
size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from privlab.attacks.reconstruction.reconstructor import WeightNormaliser
from privlab.attacks.reconstruction.shadow_shards import ShadowHeads, Shard, shard_weights
from privlab.attacks.reconstruction.weak_adversary import Reconstructor
from privlab.metrics.reconstruction import rates_at, tpr_at_fpr


def null_weights(
    normaliser: WeightNormaliser, count: int, generator: torch.Generator
) -> torch.Tensor:
    """Weights of no training set: N(θ̄, Cov_θ) with the full covariance when it was tracked
    (the paper's FPR estimator), else with the per-coordinate variances."""
    mean = normaliser.mean
    assert mean is not None
    noise = torch.randn(count, len(mean), generator=generator, dtype=torch.float64)
    if normaliser.comoment is None:
        return (mean + normaliser.std() * noise).float()
    cov = normaliser.covariance()
    chol = torch.linalg.cholesky(
        cov + 1e-12 * cov.diagonal().mean() * torch.eye(len(mean), dtype=cov.dtype)
    )
    return (mean + noise @ chol.T).float()


def evaluate_reconstructor(
    recon: Reconstructor,
    val: ShadowHeads,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float,
    null: WeightNormaliser | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Success over every validation head × class, as a hypothesis test at τ.

    * ``trained_on``: min MSE between R(θ_k, c) and head k's class-c training images;
    * ``null``: the same images against R(θ, c) for θ from :func:`null_weights` (``null``: a
      normaliser with the shadow covariance; default the reconstructor's, diagonal);
    * ``held_out``: R(θ_k, c) against the class-c images of *another* validation head;
    * ``prior_draw``: a random class-c image of the pool instead of a reconstruction (the
      random-draw-from-prior baseline).
    """
    gen = torch.Generator().manual_seed(seed)
    stats = null or recon.normaliser
    values: dict[str, list[float]] = {
        k: [] for k in ("trained_on", "null", "held_out", "prior_draw")
    }
    for shard in val:
        fake = null_weights(stats, len(shard["indices"]), gen)
        for c in recon.targets:
            for key, mse in _shard_mses(recon, shard, fake, c, images, labels, val.task, gen):
                values[key].extend(mse)
    pos = np.array(values["trained_on"])
    out: dict[str, Any] = {"tau": tau}
    for key in ("null", "held_out"):
        neg = np.array(values[key])
        tpr, fpr = rates_at(pos, neg, tau)
        out[key] = {"tpr": tpr, "fpr": fpr, "tpr_at_fpr_0.01": tpr_at_fpr(pos, neg, 0.01)}
    out["tpr"], out["fpr"] = out["null"]["tpr"], out["null"]["fpr"]
    out["tpr_at_fpr_0.01"] = out["null"]["tpr_at_fpr_0.01"]
    out["prior_draw_tpr"] = float(np.mean(np.array(values["prior_draw"]) <= tau))
    out["min_mse"] = values
    return out


def _shard_mses(
    recon: Reconstructor,
    shard: Shard,
    fake: torch.Tensor,
    c: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    task: str,
    gen: torch.Generator,
) -> Iterator[tuple[str, list[float]]]:
    """(kind, per-head min MSE to the class-c training images) for one shard and class ``c``:
    ``trained_on``, ``null`` (from the ``fake`` weights), ``held_out``, ``prior_draw``."""
    theta, idx = shard_weights(shard), shard["indices"].long()
    trained_as = shard["labels"].long()
    cs = torch.full((len(theta),), c)
    # the random-draw baseline: a pool image of the class (any image when the pool labels are
    # identities, one_vs_rest)
    pool = (labels == c).nonzero()[:, 0] if task == "balanced" else None
    draw = torch.randint(
        0, len(labels) if pool is None else len(pool), (len(theta),), generator=gen
    )
    draws = images[draw if pool is None else pool[draw]]
    real = recon(theta, cs)
    for key, guess, sets, taught in (
        ("trained_on", real, idx, trained_as),
        ("null", recon(fake, cs), idx, trained_as),
        ("held_out", real, idx.roll(1, dims=0), trained_as.roll(1, dims=0)),
        ("prior_draw", draws, idx, trained_as),
    ):
        mse = (images[sets] - guess[:, None]).pow(2).flatten(2).mean(2)
        members = taught == c
        yield key, mse.masked_fill(~members, float("inf")).min(1).values.tolist()
