"""Train (or load) the attacker's reference models for one target, as one ensemble.

The pool is the attacker's population, plus the audited candidates (members and non-members
of the target) in the online setting. Every pool example is IN for exactly
round(fraction·K) of the K models, chosen at random (Carlini et al.'s balanced split), so
each candidate has IN and OUT models. All K models are trained at once by
:func:`privlab.training.ensembles.train_ensemble` and cached together, keyed by the recipe.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.auditing import memory
from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split
from privlab.run.backend import Backend, LocalBackend, Resources, task_device
from privlab.run.files import cache_lock, stable_hash
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import Progress
from privlab.run.weights import load_cached, save_model
from privlab.studies.targets.config import ReferenceModelsConfig
from privlab.threat_model import Access, ReferenceModels, Target, TargetInfo
from privlab.training.ensembles import train_ensemble, why_sequential
from privlab.training.loop import TrainResult
from privlab.training.regime import Regime


def reference_pool(bundle: DataBundle, online: bool) -> Split:
    parts = (
        [bundle.members, bundle.nonmembers, bundle.population] if online else [bundle.population]
    )
    return Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))


def balanced_masks(n: int, count: int, fraction: float, seed: int) -> np.ndarray:
    """count × n masks: every example is IN for exactly max(1, round(fraction·count)) models."""
    k_in = min(max(1, round(fraction * count)), count - 1)
    rng = np.random.default_rng(seed)
    ranks = rng.random((count, n)).argsort(axis=0).argsort(axis=0)
    return ranks < k_in


def get_or_train_references(
    cfg: ReferenceModelsConfig,
    *,
    bundle: DataBundle,
    info: TargetInfo,
    model_cfg: Component,
    regime_cfg: Component,
    train_cfg: TrainConfig,
    seed: int,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
    label: str,
    trainer: str | None = None,
    backend: Backend | None = None,
) -> tuple[ReferenceModels, dict[str, Any]]:
    """The reference models of one target and a summary for the report.

    ``trainer``: the user's training function (``memory-trainer:<key>``), which trains each
    model in place of the recipe (:func:`trained_by_fn`), on the same pool and masks.
    A cached ensemble is used only if its weights match the recorded sha256 (otherwise a
    warning names the file and it is retrained); the cache key is locked from the check to the
    save, so a second process asking for the same ensemble waits and then loads it.
    ``backend``: where the ensemble's parts train (default: this process's threads).
    """
    pool = reference_pool(bundle, cfg.online)
    masks = balanced_masks(len(pool), cfg.count, cfg.fraction, seed + 30_000)
    seeds = [seed * 1_000 + 50_000 + k for k in range(cfg.count)]
    drawn = {"role": "reference", "seeds": seeds, "pool_sha256": pool.sha256()}
    drawn["masks"] = stable_hash(masks.tobytes().hex())
    if trainer is not None:
        jobs = [(pool.subset(np.flatnonzero(m)), s) for m, s in zip(masks, seeds, strict=True)]
        made = trained_by_fn(
            trainer,
            jobs,
            drawn,
            model_cfg=model_cfg,
            bundle=bundle,
            cache_dir=cache_dir,
            progress=progress,
            label=f"{cfg.count} reference models for {label}",
        )
        how = {"recipe": None, "regime": None, "trainer": made.trainer}
    else:
        regime_cfg = regime_cfg if cfg.recipe == "target" else Component(name="natural")
        recipe = drawn | {"model": model_cfg.model_dump(), "train": train_cfg.recipe()}
        made = ensemble_by_recipe(
            cfg, recipe, pool, masks, model_cfg, regime_cfg, train_cfg, bundle,
            device=device, cache_dir=cache_dir, progress=progress, label=label,
            backend=backend or LocalBackend(),
        )  # fmt: skip
        how = {"recipe": cfg.recipe, "regime": regime_cfg.name, "trainer": "recipe"}
    targets = [Target(m.eval(), info, Access.all(), device=device) for m in made.models]
    refs = ReferenceModels(targets, pool, masks, online=cfg.online)
    return refs, _summary(cfg, how, len(pool), made)


def ensemble_by_recipe(
    cfg: ReferenceModelsConfig,
    recipe: dict[str, Any],
    pool: Split,
    masks: np.ndarray,
    model_cfg: Component,
    regime_cfg: Component,
    train_cfg: TrainConfig,
    bundle: DataBundle,
    *,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
    label: str,
    backend: Backend,
) -> TrainedModels:
    """The ensemble trained by privlab's loop with the target's recipe (or loaded from the
    cache)."""
    regime = build_regime(regime_cfg, bundle)
    recipe = recipe | {
        "regime": {"name": regime_cfg.name, **regime.params()},
        "torch": torch.__version__.split("+")[0],
    }
    seeds = recipe["seeds"]
    key = stable_hash(recipe)
    path = cache_dir / "models" / f"reference-{key}.safetensors"
    waiting = f"{label}: waiting for another process training the same reference models"
    with cache_lock(path, on_wait=lambda: progress.log(waiting)):
        models = nn.ModuleList([build_model(model_cfg, bundle, s, regime) for s in seeds])
        meta = load_cached(models, path)
        if meta is not None:
            progress.log(f"{label}: {cfg.count} reference models loaded from cache")
            seconds, summaries = float(meta.get("seconds", 0.0)), meta.get("summaries", [])
            return TrainedModels(models, key, seconds, True, "recipe", summaries)
        make = partial(build_model, model_cfg, bundle, regime=regime)
        models, seconds, summaries = _train(
            cfg, make, pool, masks, regime, train_cfg, seeds, device, progress, label, backend
        )
        save_model(models, path, {"recipe": recipe, "seconds": seconds, "summaries": summaries})
    return TrainedModels(models, key, seconds, False, "recipe", summaries)


@dataclass
class TrainedModels:
    """Models trained together (or loaded from the cache) and how."""

    models: nn.ModuleList
    key: str | None  # None: not cached (a training function with no identity across runs)
    seconds: float
    cached: bool
    trainer: str  # "recipe" (privlab's loop) or "train_fn <qualified name>"
    summaries: list[dict[str, Any]] = field(default_factory=list)  # privacy, per model


def architecture_hash(model: nn.Module) -> str:
    """The modules (their repr) and tensor names, shapes and dtypes of an architecture."""
    tensors = [(k, list(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return stable_hash({"modules": repr(model), "tensors": tensors})


def trained_by_fn(
    spec: str,
    jobs: list[tuple[Split, int]],
    recipe: dict[str, Any],
    *,
    model_cfg: Component,
    bundle: DataBundle,
    cache_dir: Path,
    progress: Progress,
    label: str,
) -> TrainedModels:
    """One model per ``(data, seed)`` job, trained by the user's ``train_fn`` (``spec``:
    ``memory-trainer:<key>``) and loaded into the architecture of ``model_cfg`` (the audited
    model's, freshly built). Cached like privlab's own models: keyed by ``recipe`` (role,
    seeds, data), the architecture and the function's identity (its source and constants),
    checked on load; the function is called only for what is not cached. A function without
    an identity (no source) trains every time, as the log says once per audit."""
    fn = memory.trainer(spec)
    models = nn.ModuleList([build_model(model_cfg, bundle, s) for _, s in jobs])
    if fn.identity is None:
        if not fn.noted:
            progress.log(f"{fn.label}: not cached across runs ({fn.why_not_cached})")
            fn.noted = True
        seconds = _call_each(spec, jobs, models, progress, label)
        return TrainedModels(models, None, seconds, False, fn.label)
    recipe = recipe | {
        "trainer": fn.identity,
        "architecture": architecture_hash(models[0]),
        "torch": torch.__version__.split("+")[0],
    }
    key = stable_hash(recipe)
    prefix = "reference-" if recipe.get("role") == "reference" else ""
    path = cache_dir / "models" / f"{prefix}{key}.safetensors"
    waiting = f"{label}: waiting for another process training the same models"
    with cache_lock(path, on_wait=lambda: progress.log(waiting)):
        meta = load_cached(models, path)
        if meta is not None:
            progress.log(f"{label}: loaded from cache ({fn.label})")
            return TrainedModels(models, key, float(meta.get("seconds", 0.0)), True, fn.label)
        seconds = _call_each(spec, jobs, models, progress, label)
        save_model(models, path, {"recipe": recipe, "seconds": seconds, "trainer": fn.label})
    return TrainedModels(models, key, seconds, False, fn.label)


def _call_each(
    spec: str, jobs: list[tuple[Split, int]], models: nn.ModuleList, progress: Progress, label: str
) -> float:
    """Train every job's model with the user's function, in place; the seconds it took."""
    task = progress.task(f"training {label} with {memory.trainer(spec).label}", len(jobs))
    start = time.perf_counter()
    for (data, seed), into in zip(jobs, models, strict=True):
        memory.train_with(spec, data.x, data.y, seed, into)
        task.advance()
    task.done()
    return time.perf_counter() - start


def _train(
    cfg: ReferenceModelsConfig,
    make_model: Callable[[int], nn.Module],
    pool: Split,
    masks: np.ndarray,
    regime: Regime,
    train_cfg: TrainConfig,
    seeds: list[int],
    device: torch.device,
    progress: Progress,
    label: str,
    backend: Backend,
) -> tuple[nn.ModuleList, float, list[dict[str, Any]]]:
    """The K models in ``cfg.tasks`` contiguous parts, each a vectorised ensemble trained as
    one unit of ``backend`` with one thread: the ensemble, the seconds it took and the models'
    summaries. The parts are fixed by the config, so the models do not depend on the backend
    (a Ray task on a node with a GPU trains its part there, :func:`task_device`)."""
    bounds = np.linspace(0, len(seeds), min(cfg.tasks, len(seeds)) + 1).round().astype(int)
    # built here, in order: building seeds torch's global generator, which threads share
    built = [make_model(s) for s in seeds]
    parts = [(int(lo), int(hi), built[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    local = not backend.remote
    if local and why_sequential(built[0], regime, train_cfg, pool, device) is None:
        # vectorised parts draw from their own generators: threads of one torch thread each
        # (the loop that trains a model that cannot be stacked seeds the global one: no threads)
        backend = LocalBackend(workers=None)
    task = progress.task(f"training {cfg.count} reference models for {label}", len(parts))
    start = time.perf_counter()
    shared = {
        "pool": pool,
        "masks": masks,
        "regime": regime,
        "spec": train_cfg,
        "seeds": seeds,
        "chunk_size": cfg.chunk_size,
        "device": str(device) if local else None,  # a remote part: the device it is given
        "gpus": cfg.gpus,
    }
    trained: dict[int, list[TrainResult]] = {}
    for i, results in backend.map(
        _train_part, parts, shared=shared, resources=Resources(gpus=cfg.gpus)
    ):
        trained[i] = results
        task.advance()
    task.done()
    results = [r for i in range(len(parts)) for r in trained[i]]
    models = nn.ModuleList([r.model for r in results])
    return models, time.perf_counter() - start, [r.summary for r in results]


def _train_part(
    part: tuple[int, int, list[nn.Module]],
    *,
    pool: Split,
    masks: np.ndarray,
    regime: Regime,
    spec: TrainConfig,
    seeds: list[int],
    chunk_size: int | None,
    device: str | None,
    gpus: float,
) -> list[TrainResult]:
    """Models [lo, hi) of the ensemble (``part``: lo, hi and those models, untrained), on CPU
    when they come back."""
    lo, hi, models = part
    results = train_ensemble(
        dict(zip(seeds[lo:hi], models, strict=True)).__getitem__,
        pool,
        masks[lo:hi],
        regime,
        spec,
        seeds=seeds[lo:hi],
        device=torch.device(device) if device else task_device(Resources(gpus=gpus)),
        chunk_size=chunk_size,
        workers=1,
    )
    for r in results:
        r.model = r.model.cpu()
    return results


def _summary(
    cfg: ReferenceModelsConfig,
    how: dict[str, Any],
    pool: int,
    made: TrainedModels,
) -> dict[str, Any]:
    """``how``: recipe (target / natural) and regime, or None with ``trainer: train_fn NAME``
    (``trainer: recipe`` for privlab's own loop)."""
    return {
        "count": cfg.count,
        "online": cfg.online,
        "fraction": cfg.fraction,
        **how,
        "pool": pool,
        "cache_key": made.key,
        "train_seconds": made.seconds,
        "cached": made.cached,
        "privacy": made.summaries[0] if made.summaries else {},
    }
