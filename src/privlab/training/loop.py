"""The one training loop. Every regime plugs into it through the hooks of :class:`Regime`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.checkpoint import Checkpoint
from privlab.config.base import TrainConfig
from privlab.data.bundle import Split, stratified_split
from privlab.training.regime import Regime

#: the optimisation settings shared by all regimes: the config's one copy of the training fields
TrainSpec = TrainConfig


@dataclasses.dataclass
class TrainResult:
    model: nn.Module
    seconds: float
    history: list[dict[str, float]]
    summary: dict[str, Any]


EpochCallback = Callable[[int, int, float], None]


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    raise ValueError(f"unknown optimizer {spec.optimizer!r}; use 'adam' or 'sgd'")


def train(
    model: nn.Module,
    data: Split,
    regime: Regime,
    spec: TrainSpec,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch: EpochCallback | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``regime``; returns the finalised plain module.

    Seeds the global torch RNG (dropout, random starts, DP noise) and the loader's shuffling.
    ``checkpoint``: for a resumable regime, the state after every epoch is saved there, and
    training that finds one resumes from it, to the same weights as training never
    interrupted (``seconds`` adds the checkpoint's time to this call's).
    """
    if len(data) == 0:
        raise ValueError("cannot train on an empty split")
    if spec.epochs < 1 or spec.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got {spec.epochs}, {spec.batch_size}")
    torch.manual_seed(seed)
    device = torch.device(device)
    data, held_out = _validation_split(data, spec, seed)
    model = regime.adapt_model(model).to(device).train()
    positions = torch.arange(len(data), device=device)  # for regimes that tell points apart
    shuffling = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(data.x.to(device), data.y.to(device), positions),
        batch_size=min(spec.batch_size, len(data)),
        shuffle=True,
        generator=shuffling,
    )
    optimizer = make_optimizer(model, spec)
    model, optimizer, loader = regime.prepare(model, optimizer, loader, epochs=spec.epochs)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
        if spec.schedule == "cosine"
        else None
    )
    history: list[dict[str, float]] = []
    stopped: dict[str, Any] = {}
    first, spent = 0, 0.0
    if not regime.resumable:
        checkpoint = None
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        _restore(saved, model, optimizer, scheduler, shuffling, device)
        history, stopped, spent = list(saved["history"]), saved["stopped"], saved["seconds"]
        # a checkpoint of a run that stopped early has nothing left to train
        first = spec.epochs if _reached(stopped, spec) else int(saved["epoch"])
    start = time.perf_counter()
    for epoch in range(first, spec.epochs):
        regime.start_epoch(epoch, spec.epochs)
        mean_loss = _epoch(model, loader, regime, optimizer, epoch)
        if scheduler is not None:
            scheduler.step()
        history.append({"epoch": float(epoch), "loss": mean_loss})
        if on_epoch is not None:
            on_epoch(epoch + 1, spec.epochs, mean_loss)
        if held_out is not None and spec.stop_at_accuracy is not None:
            val_acc = _accuracy(model, held_out, device)
            history[-1]["val_acc"] = val_acc
            stopped = {"epochs_trained": epoch + 1, "val_acc": val_acc}
        if checkpoint is not None:
            state = _snapshot(model, optimizer, scheduler, shuffling, device)
            seconds = spent + time.perf_counter() - start
            done = {"epoch": epoch + 1, "seconds": seconds, "history": history, "stopped": stopped}
            checkpoint.save(state | done)
        if _reached(stopped, spec):
            break
    model = regime.finalize(model).eval()
    summary = regime.summary()
    if stopped:
        summary = {**summary, "early_stop": {**stopped, "reached": _reached(stopped, spec)}}
    return TrainResult(
        model=model,
        seconds=spent + time.perf_counter() - start,
        history=history,
        summary=summary,
    )


Scheduler = torch.optim.lr_scheduler.LRScheduler


def _epoch(
    model: nn.Module,
    loader: DataLoader,
    regime: Regime,
    optimizer: torch.optim.Optimizer,
    epoch: int,
) -> float:
    """One pass over the loader; the mean training loss."""
    total, count = 0.0, 0
    for xb, yb, ib in loader:
        if len(yb) == 0:  # Poisson sampling's empty draw: still a step under DP-SGD
            regime.empty_step(model, optimizer)
            continue
        loss = regime.loss_at(model, xb, yb, ib)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at epoch {epoch} under regime {regime.name!r}; "
                "lower the learning rate or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        regime.after_step(model)
        total += float(loss.detach()) * len(yb)
        count += len(yb)
    return total / max(count, 1)


def _snapshot(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler | None,
    shuffling: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """Everything training carries from one epoch to the next (a resumable regime's)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "shuffling": shuffling.get_state(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _restore(
    saved: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler | None,
    shuffling: torch.Generator,
    device: torch.device,
) -> None:
    """Put a :func:`_snapshot` back."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    shuffling.set_state(saved["shuffling"])
    torch.set_rng_state(saved["rng"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda_rng"], device)


def _reached(stopped: dict[str, Any], spec: TrainSpec) -> bool:
    """Whether early stopping's validation accuracy reached its goal."""
    goal = spec.stop_at_accuracy
    return bool(stopped) and goal is not None and stopped["val_acc"] >= goal


def _validation_split(data: Split, spec: TrainSpec, seed: int) -> tuple[Split, Split | None]:
    """(training part, validation part) when training stops at an accuracy, else (data, None)."""
    if spec.stop_at_accuracy is None:
        return data, None
    if not 0 < spec.validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {spec.validation}")
    n_val = max(1, round(spec.validation * len(data)))
    if n_val >= len(data):
        raise ValueError(f"{len(data)} examples are too few to hold out a validation set")
    val, fit = stratified_split(data.y.numpy(), [n_val, len(data) - n_val], seed=seed + 90_000)
    return data.subset(fit), data.subset(val)


@torch.no_grad()
def _accuracy(model: nn.Module, data: Split, device: torch.device) -> float:
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(xb.to(device)).argmax(1) == yb.to(device)).sum())
        for xb, yb in zip(data.x.split(512), data.y.split(512), strict=True)
    )
    model.train(was_training)
    return correct / max(len(data), 1)
