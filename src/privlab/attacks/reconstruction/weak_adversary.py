"""The weak adversary (Maciazek & Allison): learn to map released head weights to training images.

It knows the architecture, the training recipe and the data prior, not the training set. It
trains many shadow heads on its own sets from the prior (Algorithm 1, :mod:`privlab.experiment.
shadow_heads`), then a reconstructor network from (normalised weights ⊕ class) to an image of
that class in the head's training set, with the soft-min loss of Eq. 3 and early stopping on
validation shadows trained on a disjoint part of the prior.

Success is a hypothesis test (:mod:`privlab.metrics.reconstruction`): on a validation head, a
reconstruction of class c is a true positive when it lies within τ (MSE) of one of the head's
class-c training images; false positives compare reconstructions from *null* weights, drawn
from N(θ̄, Cov_θ) of the shadow heads (the paper's way), with the same images. Shards are read
one at a time: memory stays bounded by the shard size.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks.reconstruction.reconstructor import (
    MLPReconstructor,
    ResidualGenerator,
    WeightNormaliser,
    soft_min_loss,
)
from privlab.metrics.reconstruction import rates_at, tpr_at_fpr
from privlab.studies.reconstruction.shadow_heads import ShadowJob, iter_shards


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReconstructorConfig:
    kind: Literal["residual", "mlp"] = "mlp"
    width: int = 512  # MLP width, or S of the residual generator (the paper: 256 for MNIST)
    blocks: int = 2
    conditional: bool = True
    lr: float = 2e-4
    batch_size: int = 32
    epochs: int = 1  # passes over the training shards
    alpha: float = 100.0
    eval_every: int = 500  # steps between validation checks
    patience: int = 5  # checks without improvement before stopping


def shard_weights(shard: dict[str, torch.Tensor]) -> torch.Tensor:
    """K × D_Θ: the flattened parameters of a shard's heads (in parameter-name order)."""
    return torch.cat(
        [v.reshape(len(v), -1).float() for k, v in sorted(shard.items()) if k.startswith("param.")],
        dim=1,
    )


def fit_normaliser(
    job: ShadowJob, shard_dir: str | Path, *, covariance: bool = False
) -> WeightNormaliser:
    norm = WeightNormaliser(covariance=covariance)
    for shard in iter_shards(job, shard_dir):
        norm.update(shard_weights(shard))
    return norm


@dataclasses.dataclass
class Reconstructor:
    """A trained reconstructor with its weight normaliser and class count."""

    model: nn.Module
    normaliser: WeightNormaliser
    classes: int
    conditional: bool
    history: list[dict[str, float]]
    targets: list[int]  # the classes it reconstructs

    @torch.no_grad()
    def __call__(self, theta: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(_inputs(self.normaliser(theta), classes, self.classes, self.conditional))


def _inputs(
    theta: torch.Tensor, classes: torch.Tensor, count: int, conditional: bool
) -> torch.Tensor:
    if not conditional:
        return theta
    return torch.cat([theta, F.one_hot(classes, count).float()], dim=1)


def _batches(
    shard: dict[str, torch.Tensor],
    images: torch.Tensor,
    targets: list[int],
    batch_size: int,
    gen: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(θ, class, candidates) batches of one shard: the candidates are the head's training
    images it was taught as that class (one of ``targets``, drawn at random)."""
    theta, idx, trained_as = shard_weights(shard), shard["indices"].long(), shard["labels"].long()
    order = torch.randperm(len(theta), generator=gen)
    choices = torch.tensor(targets)
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        c = choices[torch.randint(0, len(choices), (len(rows),), generator=gen)]
        members = trained_as[rows] == c[:, None]
        per = int(members.sum(1).min())
        pick = members.float().argsort(dim=1, descending=True, stable=True)[:, :per]
        yield theta[rows], c, images[idx[rows].gather(1, pick)]


def train_reconstructor(
    job: ShadowJob,
    train_dir: str | Path,
    val_job: ShadowJob,
    val_dir: str | Path,
    images: torch.Tensor,
    val_images: torch.Tensor,
    cfg: ReconstructorConfig,
    *,
    seed: int = 0,
    normaliser: WeightNormaliser | None = None,
) -> Reconstructor:
    """Train on the shards of ``job`` (pool ``images`` in [−1, 1]); early stopping on the
    validation shards' soft-min loss. Memory: one shard and the model. ``normaliser``: the
    shadows' statistics when the caller already has them (else one pass over the shards)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    classes, targets = job.classes, job.target_classes
    if normaliser is None:
        normaliser = fit_normaliser(job, train_dir)
    in_dim = int(normaliser.mean.numel()) + (classes if cfg.conditional else 0)  # type: ignore[union-attr]
    shape = tuple(images.shape[1:])
    model: nn.Module = (
        ResidualGenerator(in_dim, shape, width=cfg.width, blocks=cfg.blocks)  # type: ignore[arg-type]
        if cfg.kind == "residual"
        else MLPReconstructor(in_dim, shape, width=cfg.width)  # type: ignore[arg-type]
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def val_loss() -> float:
        model.eval()
        total, count = 0.0, 0
        vgen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for shard in iter_shards(val_job, val_dir):
                for theta, c, cands in _batches(shard, val_images, targets, 256, vgen):
                    out = model(_inputs(normaliser(theta), c, classes, cfg.conditional))
                    total += float(soft_min_loss(out, cands, alpha=cfg.alpha).sum())
                    count += len(c)
        model.train()
        return total / max(count, 1)

    history: list[dict[str, float]] = []
    best, best_state, since, step = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    model.train()
    for _ in range(cfg.epochs):
        for shard in iter_shards(job, train_dir):
            for theta, c, cands in _batches(shard, images, targets, cfg.batch_size, gen):
                out = model(_inputs(normaliser(theta), c, classes, cfg.conditional))
                loss = soft_min_loss(out, cands, alpha=cfg.alpha).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % cfg.eval_every == 0:
                    v = val_loss()
                    history.append({"step": float(step), "train": loss.item(), "val": v})
                    if v < best:
                        best, best_state, since = v, copy.deepcopy(model.state_dict()), 0
                    else:
                        since += 1
                    if since >= cfg.patience:
                        model.load_state_dict(best_state)
                        return Reconstructor(
                            model, normaliser, classes, cfg.conditional, history, targets
                        )
    v = val_loss()
    history.append({"step": float(step), "val": v})
    if v > best:
        model.load_state_dict(best_state)
    return Reconstructor(model, normaliser, classes, cfg.conditional, history, targets)


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
    val_job: ShadowJob,
    val_dir: str | Path,
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
    for shard in iter_shards(val_job, val_dir):
        theta, idx = shard_weights(shard), shard["indices"].long()
        trained_as = shard["labels"].long()
        fake = null_weights(stats, len(theta), gen)
        for c in recon.targets:
            cs = torch.full((len(theta),), c)
            # the random-draw baseline: a pool image of the class (any image when the pool
            # labels are identities, one_vs_rest)
            pool = (labels == c).nonzero()[:, 0] if val_job.task == "balanced" else None
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
                values[key].extend(mse.masked_fill(~members, float("inf")).min(1).values.tolist())
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
