"""Train (or load) the attacker's reference models for one target, as one ensemble.

The pool is the attacker's population, plus the audited candidates (members and non-members
of the target) in the online setting. Every pool example is IN for exactly
round(fraction·K) of the K models, chosen at random (Carlini et al.'s balanced split), so
each candidate has IN and OUT models. All K models are trained at once by
:func:`privlab.training.ensembles.train_ensemble` and cached together, keyed by the recipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import Progress
from privlab.run.store import cache_lock, load_cached, save_model, stable_hash
from privlab.studies.targets.config import ReferenceModelsConfig
from privlab.threat_model import Access, ReferenceModels, Target, TargetInfo
from privlab.training.ensembles import train_ensemble
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
) -> tuple[ReferenceModels, dict[str, Any]]:
    """The reference models of one target and a summary for the report.

    A cached ensemble is used only if its weights match the recorded sha256 (otherwise a
    warning names the file and it is retrained); the cache key is locked from the check to the
    save, so a second process asking for the same ensemble waits and then loads it.
    """
    regime_cfg = regime_cfg if cfg.recipe == "target" else Component(name="natural")
    pool = reference_pool(bundle, cfg.online)
    masks = balanced_masks(len(pool), cfg.count, cfg.fraction, seed + 30_000)
    seeds = [seed * 1_000 + 50_000 + k for k in range(cfg.count)]
    regime = build_regime(regime_cfg, bundle)
    recipe = {
        "role": "reference",
        "seeds": seeds,
        "pool_sha256": pool.sha256(),
        "masks": stable_hash(masks.tobytes().hex()),
        "model": model_cfg.model_dump(),
        "regime": {"name": regime_cfg.name, **regime.params()},
        "train": train_cfg.recipe(),
        "torch": torch.__version__.split("+")[0],
    }
    key = stable_hash(recipe)
    path = cache_dir / "models" / f"reference-{key}.safetensors"
    waiting = f"{label}: waiting for another process training the same reference models"
    with cache_lock(path, on_wait=lambda: progress.log(waiting)):
        models = nn.ModuleList([build_model(model_cfg, bundle, s, regime) for s in seeds])
        meta = load_cached(models, path)
        if meta is not None:
            progress.log(f"{label}: {cfg.count} reference models loaded from cache")
            seconds, summaries = float(meta.get("seconds", 0.0)), meta.get("summaries", [])
        else:
            make = partial(build_model, model_cfg, bundle, regime=regime)
            models, seconds, summaries = _train(
                cfg, make, pool, masks, regime, train_cfg, seeds, device, progress, label
            )
            save_model(models, path, {"recipe": recipe, "seconds": seconds, "summaries": summaries})
    targets = [Target(m.eval(), info, Access.all(), device=device) for m in models]
    refs = ReferenceModels(targets, pool, masks, online=cfg.online)
    return refs, _summary(cfg, regime_cfg.name, len(pool), key, seconds, summaries, meta)


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
) -> tuple[nn.ModuleList, float, list[dict[str, Any]]]:
    """All K models trained at once: the ensemble, the seconds it took and their summaries."""
    task = progress.task(f"training {cfg.count} reference models for {label}", train_cfg.epochs)
    start = time.perf_counter()
    results = train_ensemble(
        make_model,
        pool,
        masks,
        regime,
        train_cfg,
        seeds=seeds,
        device=device,
        chunk_size=cfg.chunk_size,
        on_epoch=lambda *_: task.advance(),
    )
    task.done()
    models = nn.ModuleList([r.model.cpu() for r in results])
    return models, time.perf_counter() - start, [r.summary for r in results]


def _summary(
    cfg: ReferenceModelsConfig,
    regime: str,
    pool: int,
    key: str,
    seconds: float,
    summaries: list[dict[str, Any]],
    meta: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "count": cfg.count,
        "online": cfg.online,
        "fraction": cfg.fraction,
        "recipe": cfg.recipe,
        "regime": regime,
        "pool": pool,
        "cache_key": key,
        "train_seconds": seconds,
        "cached": meta is not None,
        "privacy": summaries[0] if summaries else {},
    }
