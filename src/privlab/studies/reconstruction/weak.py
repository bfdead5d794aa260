"""The reconstruction study's weak adversary (Maciazek & Allison; the informed adversary is in
:mod:`privlab.studies.reconstruction.informed`), per variant: shadow heads on the attacker's
training and validation priors (sharded, cached under the cache folder by job key, resumable),
the reconstructor (the registered ``weak_adversary`` attack, fitted on them), then the
hypothesis test on the validation heads: TPR*/FPR* at the nearest-neighbour τ, TPR at FPR =
0.01, the cumulative and Neyman–Pearson ROC, FPR from held-out heads and the random-draw
baseline, head test accuracy (utility) and, for DP-SGD heads, ε and the ReRo bound on the
success (those measures are in :mod:`privlab.studies.reconstruction.weak_measures`).

Every finished unit (a variant, an informed study) is written atomically to ``state/`` under a
key of everything it depends on; re-running an interrupted experiment resumes from there.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from privlab import __version__
from privlab.attacks.reconstruction.evaluation import evaluate_reconstructor
from privlab.attacks.reconstruction.reconstructor import WeightNormaliser
from privlab.attacks.reconstruction.shadow_shards import ShadowHeads
from privlab.attacks.reconstruction.weak_adversary import (
    Reconstructor,
    WeakAdversary,
    fit_normaliser,
)
from privlab.data.bundle import Split, stratified_split
from privlab.metrics.reconstruction import (
    largest_defended_epsilon,
    nn_mse_threshold,
    to_symmetric,
)
from privlab.registry import ATTACKS
from privlab.run.backend import Backend, LocalBackend
from privlab.run.files import remove_unless_used, shared_use, stable_hash
from privlab.run.progress import Progress, SilentProgress
from privlab.run.store import FileCheckpoint, StateDir
from privlab.studies.reconstruction.config import (
    WeakAdversaryConfig,
    WeakVariant,
)
from privlab.studies.reconstruction.shadow_heads import (
    ShadowJob,
    generate_shadow_heads,
    shadow_heads,
)
from privlab.studies.reconstruction.transfer import TransferData, paper_tau, transfer_setting
from privlab.studies.reconstruction.weak_measures import (
    dp_privacy,
    examples,
    head_utility,
    hypothesis_results,
)
from privlab.training.heads import HeadDP, HeadSpec

# ---------------------------------------------------------------- weak adversary


class Priors:
    """The attacker's pool (features, labels, images in [−1, 1]) split, stratified, into its
    training prior and a disjoint validation prior, with the nearest-neighbour τ between them."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        images: torch.Tensor,
        *,
        prior_split: float,
        seed: int,
        extractor_sha256: str,
        tau: float | None = None,
    ) -> None:
        self.features, self.pool_labels, self.images = features, labels, images
        self.extractor_sha256 = extractor_sha256
        size = len(labels)
        k = round(prior_split * size)
        train_idx, val_idx = stratified_split(labels.numpy(), [k, size - k], seed=seed)
        self.idx = {"train": torch.as_tensor(train_idx), "val": torch.as_tensor(val_idx)}
        # τ given (the paper's, over a whole dataset), else between the two priors
        self.tau = (
            nn_mse_threshold(images[self.idx["train"]], images[self.idx["val"]])
            if tau is None
            else float(tau)
        )
        self.sha256 = {part: Split(features[i], labels[i]).sha256() for part, i in self.idx.items()}

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i = self.idx[name]
        return self.features[i], self.pool_labels[i], self.images[i]


def _configured_tau(cfg: WeakAdversaryConfig) -> float | None:
    """The config's τ: the paper's over the whole dataset, a number, or None (the priors')."""
    if cfg.tau == "dataset":
        return paper_tau(cfg.dataset)
    return None if cfg.tau == "priors" else float(cfg.tau)


def transfer_priors(cfg: WeakAdversaryConfig, seed: int, cache: Path, progress: Progress) -> Priors:
    """The priors of the transfer setting: the half of ``cfg.dataset`` the base network never
    saw, with digits (or, one_vs_rest, pseudo identities) as labels."""
    data: TransferData = transfer_setting(
        dataset=cfg.dataset,
        seed=seed,
        cache_dir=cache,
        epochs=cfg.pretrain_epochs,
        progress=progress,
    )
    labels = data.identities(cfg.identities) if cfg.task == "one_vs_rest" else data.labels
    tau = _configured_tau(cfg)
    return Priors(
        data.features,
        labels,
        to_symmetric(data.images),
        prior_split=cfg.prior_split,
        seed=seed,
        extractor_sha256=data.extractor.sha256,
        tau=tau,
    )


def variant_settings(cfg: WeakAdversaryConfig, v: WeakVariant) -> dict[str, Any]:
    n = v.n or cfg.n
    spec = cfg.head.model_copy(
        update={"sigma_init": v.sigma_init} if v.sigma_init is not None else {}
    )
    dp_cfg = v.dp or cfg.dp
    dp = None
    if dp_cfg is not None:
        epochs = spec.epochs_for(n)
        dp = HeadDP(clip=dp_cfg.clip, noise_multiplier=HeadDP.noise_for(dp_cfg.epsilon, n, epochs))
    recon = cfg.reconstructor.model_dump()
    if v.reconstructor_epochs is not None:
        recon["epochs"] = v.reconstructor_epochs
    return {
        "n": n,
        "shadows": v.shadows or cfg.shadows,
        "spec": spec,
        "dp": dp,
        "reconstructor": ATTACKS.build("weak_adversary", **recon),
    }


def _shadows(
    cfg: WeakAdversaryConfig,
    variant: WeakVariant,
    priors: Priors,
    s: dict[str, Any],
    *,
    seed: int,
    cache: Path,
    progress: Progress,
    backend: Backend,
    in_use: contextlib.ExitStack,
) -> tuple[dict[str, ShadowJob], dict[str, ShadowHeads], float]:
    """The training and validation shadow heads (generated where missing, cached by job key):
    their jobs, the attack's view of them, and the seconds it took. Their folders are held in
    use (:func:`~privlab.run.files.shared_use`) until ``in_use`` closes, so that another run
    sharing them does not delete them meanwhile."""
    jobs = {
        part: ShadowJob(
            spec=s["spec"],
            n=s["n"],
            count=s["shadows"] if part == "train" else cfg.val_shadows,
            shard_size=cfg.shard_size,
            seed=2 * seed + i,
            pool_sha256=priors.sha256[part],
            task=cfg.task,
            dp=s["dp"],
        )
        for i, part in enumerate(("train", "val"))
    }
    dirs = {part: shadow_dir(cache, job.key()) for part, job in jobs.items()}
    for folder in dirs.values():
        in_use.enter_context(shared_use(folder))
    start = time.perf_counter()
    for part, job in jobs.items():
        feats, labels, _ = priors.part(part)
        shards = progress.task(f"{variant.name}: {job.count} {part} shadow heads", job.shards)
        generate_shadow_heads(
            job, feats, labels, dirs[part], backend=backend, on_shards=shards.advance
        )
        shards.done()
    heads = {part: shadow_heads(job, dirs[part]) for part, job in jobs.items()}
    return jobs, heads, time.perf_counter() - start


def shadow_dir(cache: Path, job_key: str) -> Path:
    """Where a job's shards live in the cache (by its configuration hash)."""
    return cache / "shadow_heads" / job_key[:16]


def _null_law(heads: ShadowHeads, job_key: str, cache: Path) -> WeightNormaliser:
    """One pass over the training shards: the full covariance (the null weights' law) also
    gives the per-coordinate mean and std that normalise the reconstructor's input. Kept
    beside the shards (and deleted with them), so a resumed fit does not pass over them again."""
    folder = shadow_dir(cache, job_key)
    stored = FileCheckpoint(folder / "null_law.safetensors", {"null_law": job_key})
    state = stored.load()
    if state is not None:
        return WeightNormaliser.from_state(state)
    null = fit_normaliser(heads, covariance=True)
    try:
        stored.save(null.state())
    except OSError as err:  # a full or read-only cache: only a resume gets slower
        warnings.warn(f"the null weights' law is not kept for a resume: {err}", stacklevel=2)
    return null


def _fit(
    attack: WeakAdversary,
    heads: dict[str, ShadowHeads],
    priors: Priors,
    null: WeightNormaliser,
    seed: int,
    cache: Path,
    jobs: dict[str, ShadowJob],
    progress: Progress,
    name: str,
) -> tuple[Reconstructor, float, dict[str, str], FileCheckpoint]:
    """The reconstructor fitted, the seconds it took, the jobs' keys and its checkpoint; shown
    as a task of ``name``'s training steps. Its progress is checkpointed in the cache, named by
    what the fit depends on, so that an interrupted run resumes it (a long fit on a million
    heads). The caller clears the checkpoint once the variant's result is complete: a stop
    during the evaluation then costs the evaluation, not the fit."""
    job_keys = {part: job.key() for part, job in jobs.items()}
    train = jobs["train"]
    steps = progress.task(
        f"{name}: reconstructor", attack.steps([train.shard_count(i) for i in range(train.shards)])
    )
    fit_key = {"jobs": job_keys, "reconstructor": attack.params(), "seed": seed}
    checkpoint = FileCheckpoint(
        cache / "reconstructors" / f"{stable_hash(fit_key)[:16]}.safetensors",
        fit_key | {"priors": priors.sha256, "version": __version__},
    )
    start = time.perf_counter()
    train_images, val_images = priors.part("train")[2], priors.part("val")[2]
    recon = attack.fit(
        heads["train"], heads["val"], train_images, val_images,
        seed=seed, normaliser=null, checkpoint=checkpoint, on_steps=steps.advance,
    )  # fmt: skip
    steps.done()
    return recon, time.perf_counter() - start, job_keys, checkpoint


def run_weak_variant(
    cfg: WeakAdversaryConfig,
    variant: WeakVariant,
    priors: Priors,
    s: dict[str, Any],
    *,
    seed: int,
    cache: Path,
    progress: Progress,
    released: Callable[[Reconstructor], dict[str, Any]] | None = None,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """One variant end to end; ``s``: its resolved settings (:func:`variant_settings`);
    ``released``: what the fitted reconstructor makes of a released head (an audit);
    ``backend``: where the shadow heads train (default: here)."""
    spec: HeadSpec = s["spec"]
    attack: WeakAdversary = s["reconstructor"]
    with contextlib.ExitStack() as in_use:  # the shards stay while this variant runs
        jobs, heads, shadow_seconds = _shadows(
            cfg, variant, priors, s, seed=seed, cache=cache, progress=progress,
            backend=backend or LocalBackend(), in_use=in_use,
        )  # fmt: skip
        train_feats, train_labels, _ = priors.part("train")
        _, val_labels, val_images = priors.part("val")
        null = _null_law(heads["train"], jobs["train"].key(), cache)
        recon, train_seconds, job_keys, fitted = _fit(
            attack, heads, priors, null, seed, cache, jobs, progress, variant.name
        )
        result = evaluate_reconstructor(
            recon, heads["val"], val_images, val_labels, tau=priors.tau, null=null, seed=seed
        )
        first = next(iter(heads["val"]))
        positives = None if cfg.task == "balanced" else val_labels[first["indices"][:, 0].long()]
        out: dict[str, Any] = {
            "name": variant.name,
            "n": s["n"],
            "shadows": s["shadows"],
            "val_shadows": cfg.val_shadows,
            "sigma_init": spec.sigma_init,
            "epochs": spec.epochs_for(s["n"]),
            "reconstructor": attack.params(),
            "steps": recon.history[-1]["step"] if recon.history else 0,
            "history": recon.history,
            "tau": priors.tau,
            **hypothesis_results(result),
            "utility": head_utility(jobs["val"], first, train_feats, train_labels, positives),
            "examples": examples(recon, first, val_images, priors.tau, cfg.examples),
            "job_keys": job_keys,
            "seconds": {"shadows": shadow_seconds, "reconstructor": train_seconds},
        }
        if s["dp"] is not None:
            out |= dp_privacy(cfg, s, recon, jobs["val"], val_images, val_labels, priors.tau)
        if released is not None:
            out["released"] = released(recon)
        fitted.clear()  # the result is complete: a resume no longer needs the fit's progress
        return out


def _variant_key(
    cfg: WeakAdversaryConfig, seed: int, priors: Priors, s: dict[str, Any]
) -> dict[str, Any]:
    """Everything a variant's result depends on (its ``state/`` key). The reconstructor's
    precision (added after runs were stored) is in it only where it is not the default, so
    that those runs' keys still hold."""
    config = cfg.model_dump(mode="json", exclude={"variants", "keep_shadows"})
    if config["reconstructor"]["precision"] == "float32":
        del config["reconstructor"]["precision"]
    return {
        "unit": "weak_variant",
        "version": __version__,
        "seed": seed,
        "priors": priors.sha256,
        "tau": priors.tau,
        "extractor": priors.extractor_sha256,
        "settings": {k: repr(val) for k, val in s.items()},
        "config": config,
    }


def _variant_task(
    item: tuple[WeakVariant, dict[str, Any]],
    *,
    cfg: WeakAdversaryConfig,
    priors: Priors,
    seed: int,
    cache: Path,
    backend: Backend,
) -> dict[str, Any]:
    """One variant as a backend task (no progress bars: they belong to the driver)."""
    v, s = item
    return run_weak_variant(
        cfg, v, priors, s, seed=seed, cache=cache, progress=SilentProgress(), backend=backend
    )


def run_weak_adversary(
    cfg: WeakAdversaryConfig,
    seed: int,
    cache: Path,
    state: StateDir,
    progress: Progress,
    backend: Backend | None = None,
) -> dict[str, Any]:
    priors = transfer_priors(cfg, seed, cache, progress)
    todo = [(v, variant_settings(cfg, v)) for v in cfg.resolved_variants()]
    units = [(f"weak-{v.name}", _variant_key(cfg, seed, priors, s), (v, s)) for v, s in todo]
    if backend is not None and backend.remote and len(units) > 1:
        # the variants as tasks, each training its shadows where it runs (a Ray task's own
        # cache folder; kept there when ``keep_shadows``), its shards as nested tasks
        shared = {"cfg": cfg, "priors": priors, "seed": seed, "cache": cache}
        shared["backend"] = backend.inner()
        state.fill(backend, _variant_task, units, shared=shared)
    variants = []
    for (v, s), (prefix, key, _) in zip(todo, units, strict=True):
        run = partial(run_weak_variant, cfg, v, priors, s, seed=seed, cache=cache)
        run = partial(run, progress=progress, backend=backend)
        variants.append(state.get_or_run(prefix, key, run))
        if not cfg.keep_shadows:  # the result is in state/: the shards may go, unless
            for job_key in variants[-1].get("job_keys", {}).values():  # another run uses them
                remove_unless_used(shadow_dir(cache, job_key))
    private = [v for v in variants if v.get("privacy")]
    defended = (
        {
            str(n): largest_defended_epsilon(
                [v["privacy"]["epsilon"] for v in private if v["n"] == n],
                [v["tpr_at_fpr_0.01"] for v in private if v["n"] == n],
            )
            for n in sorted({v["n"] for v in private})
        }
        if private
        else None
    )
    return {
        "dataset": cfg.dataset,
        "task": cfg.task,
        "defended_epsilon": defended,
        "tau": priors.tau,
        "tau_from": cfg.tau if isinstance(cfg.tau, str) else "given",
        "pool": {part: len(i) for part, i in priors.idx.items()},
        "sha256": priors.sha256 | {"extractor": priors.extractor_sha256},
        "variants": variants,
    }
