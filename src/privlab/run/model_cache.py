"""Train a model for a target config, or load it from the cache keyed by the config hash.

A cached model is used only if its weights match the sha256 recorded beside them (otherwise a
warning names the file and the model is retrained), and the cache key is locked while it is
checked and trained, so two processes asking for the same model train it once.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split
from privlab.registry import MODELS, REGIMES
from privlab.run.files import cache_lock, stable_hash
from privlab.run.progress import Progress
from privlab.run.store import FileCheckpoint
from privlab.run.weights import load_cached, save_model
from privlab.training.loop import TrainSpec, train
from privlab.training.regime import Regime


def default_cache_dir() -> Path:
    env = os.environ.get("PRIVLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "privlab"


@dataclasses.dataclass
class TrainedModel:
    model: nn.Module
    regime: Regime
    key: str
    sha256: str
    seconds: float
    summary: dict[str, Any]
    cached: bool


def build_regime(component: Component, bundle: DataBundle, public: Split | None = None) -> Regime:
    """The regime with the bundle's value range, and public data when it pre-trains on some."""
    regime: Regime = REGIMES.build(component.name, **component.params)
    if getattr(regime, "input_shape", ()) is None:  # a regime that shapes a layer to the input
        regime = dataclasses.replace(regime, input_shape=bundle.input_shape)  # type: ignore[call-arg]
    if regime.uses_public_data:
        public = public if public is not None else bundle.population
        if len(public) == 0:
            raise ValueError(
                f"regime {component.name!r} pre-trains on public data, but none is left"
            )
        return dataclasses.replace(regime, clip=bundle.value_range, _public=public)
    return dataclasses.replace(regime, clip=bundle.value_range)


def build_model(
    component: Component, bundle: DataBundle, seed: int, regime: Regime | None = None
) -> nn.Module:
    """The architecture, initialised from ``seed``, adapted by the regime (VIB head, mask)."""
    torch.manual_seed(seed)  # initialisation is part of what the seed fixes
    model: nn.Module = MODELS.build(
        component.name,
        input_shape=bundle.input_shape,
        num_classes=bundle.num_classes,
        **component.params,
    )
    return regime.adapt_model(model) if regime is not None else model


def get_or_train(
    *,
    role: str,
    data: Split,
    bundle: DataBundle,
    model_cfg: Component,
    regime_cfg: Component,
    train_cfg: TrainConfig,
    seed: int,
    device: torch.device,
    cache_dir: Path,
    progress: Progress,
    label: str,
    public: Split | None = None,
) -> TrainedModel:
    """Return a trained model, from cache when the exact same recipe and data were seen.

    ``public``: data a regime may pre-train on (TL-DMI); the bundle's population by default.
    A cache entry whose weights do not match its recorded sha256 is retrained (with a warning
    naming the file). The cache key is locked from the check to the save: a second process
    asking for the same model waits, then loads it.
    """
    regime = build_regime(regime_cfg, bundle, public)
    recipe = {
        "role": role,
        "seed": seed,
        "data_sha256": data.sha256(),
        "model": model_cfg.model_dump(),
        "regime": {"name": regime_cfg.name, **regime.params()},
        "train": train_cfg.recipe(),
        "torch": torch.__version__.split("+")[0],
    }
    if regime._public is not None:
        recipe["public_sha256"] = regime._public.sha256()
    key = stable_hash(recipe)
    path = cache_dir / "models" / f"{key}.safetensors"
    waiting = f"{label}: waiting for another process training the same model"
    with cache_lock(path, on_wait=lambda: progress.log(waiting)):
        model = build_model(model_cfg, bundle, seed, regime)
        meta = load_cached(model, path)
        if meta is not None:
            progress.log(f"{label}: loaded from cache")
            seconds, summary = float(meta.get("seconds", 0.0)), meta.get("summary", {})
            return TrainedModel(
                model.eval(), regime, key, meta["model_sha256"], seconds, summary, True
            )
        return _train_and_save(
            model,
            data,
            regime,
            train_cfg,
            recipe,
            key,
            path,
            seed=seed,
            device=device,
            progress=progress,
            label=label,
        )


def _train_and_save(
    model: nn.Module,
    data: Split,
    regime: Regime,
    spec: TrainSpec,
    recipe: dict[str, Any],
    key: str,
    path: Path,
    *,
    seed: int,
    device: torch.device,
    progress: Progress,
    label: str,
) -> TrainedModel:
    task = progress.task(f"training {label}", spec.epochs)
    shown = [0]

    def on_epoch(done: int, total: int, loss: float) -> None:
        task.advance(done - shown[0])  # a resumed run starts past its checkpoint's epochs
        shown[0] = done

    # an interrupted training resumes from its last epoch (resumable regimes)
    checkpoint = FileCheckpoint(path.parent.parent / "checkpoints" / path.name, recipe)
    result = train(
        model,
        data,
        regime,
        spec,
        seed=seed,
        device=device,
        on_epoch=on_epoch,
        checkpoint=checkpoint,
    )
    task.done()
    trained = result.model.cpu()
    metadata = {
        "recipe": recipe,
        "seconds": result.seconds,
        "summary": result.summary,
        "history": result.history,
    }
    digest = save_model(trained, path, metadata)
    checkpoint.clear()
    return TrainedModel(trained, regime, key, digest, result.seconds, result.summary, False)
