"""The federated task of one seed (data, the attacked global model, the client batches) and
what the study measures on it at one defence point: the server's observations of the batches
under the defence, every attack against them (scored), the updates' sparsity, and FedAvg's
utility with the defence at every client; also the no-attack baselines (the members' mean
image, uniform noise). :mod:`privlab.studies.gradient_inversion.run` caches each of these as a
unit and assembles the report."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab import __version__
from privlab.attacks.gradient_inversion.base import server_target
from privlab.config.base import Component, TrainConfig
from privlab.data.from_config import bundle_from_config
from privlab.federated.client import client_update
from privlab.federated.defences import DEFENCES, defended_update
from privlab.federated.observation import GradientObservation
from privlab.federated.training import federated_train
from privlab.registry import ATTACKS
from privlab.report.image_codec import image_hex
from privlab.run.model_cache import build_model, get_or_train
from privlab.run.progress import Progress
from privlab.run.weights import state_sha256
from privlab.studies.gradient_inversion.config import ClientSetting, GradientInversionConfig
from privlab.studies.gradient_inversion.defence_comparison import QUALITY
from privlab.studies.gradient_inversion.scores import best_of, mean_of, score_batch
from privlab.studies.gradient_inversion.sparsity import update_sparsity

CPU = torch.device("cpu")


class FederatedTask:
    """One seed's fixed pieces: data, the attacked global model and the client batches."""

    def __init__(
        self,
        cfg: GradientInversionConfig,
        seed: int,
        cache: Path,
        progress: Progress,
        device: torch.device = CPU,
    ) -> None:
        self.cfg, self.seed, self.device = cfg, seed, device
        self.bundle = bundle_from_config(cfg.data, seed, "gradient_inversion.data")
        self.model = self._global_model(cache, progress).eval()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.model_sha256 = state_sha256(self.model)
        # what the server attacks with: the global model's weights and the clients' updates
        # (its own copy, on the attacks' device; self.model stays on the CPU for the clients)
        self.target = server_target(
            self.model,
            input_shape=self.bundle.input_shape,
            num_classes=self.bundle.num_classes,
            value_range=self.bundle.value_range,
            device=device,
        )
        self.members = self.bundle.members
        self.members_sha256 = self.members.sha256()
        self.pool = self.members.x.flatten(1).double()  # identification candidates

    def _global_model(self, cache: Path, progress: Progress) -> nn.Module:
        if self.cfg.pretrain_epochs == 0:
            with torch.random.fork_rng():
                return build_model(self.cfg.model, self.bundle, self.seed).cpu()
        trained = get_or_train(
            role="federated_global",
            data=self.bundle.population,
            bundle=self.bundle,
            model_cfg=self.cfg.model,
            regime_cfg=Component(name="natural"),
            train_cfg=TrainConfig(epochs=self.cfg.pretrain_epochs),
            seed=self.seed,
            device=CPU,
            cache_dir=cache,
            progress=progress,
            label="global model (pre-trained on the population)",
        )
        return trained.model.cpu()

    def new_model(self, seed: int | None = None) -> nn.Module:
        """A freshly initialised model (FedAvg starts here), from the task's seed by default."""
        return build_model(self.cfg.model, self.bundle, self.seed if seed is None else seed)

    def batches(self, client: ClientSetting) -> list[tuple[torch.Tensor, torch.Tensor, list[int]]]:
        """``batches`` disjoint client batches of B members, drawn with a seeded permutation
        (the splits are sorted by class, so consecutive members would share a label)."""
        need = self.cfg.batches * client.batch_size
        if need > len(self.members):
            raise ValueError(
                f"{self.cfg.batches} batches of {client.batch_size} need {need} members, the "
                f"data has {len(self.members)}"
            )
        gen = torch.Generator().manual_seed(self.seed + 7919 * client.batch_size)
        order = torch.randperm(len(self.members), generator=gen)[:need]
        out = []
        for rows in order.split(client.batch_size):
            out.append((self.members.x[rows], self.members.y[rows], rows.tolist()))
        return out

    def key(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "seed": self.seed,
            "model_sha256": self.model_sha256,
            "members_sha256": self.members_sha256,
        }


# ---------------------------------------------------------------- the units

Batches = list[tuple[torch.Tensor, torch.Tensor, list[int]]]


def observations_of(
    task: FederatedTask,
    client: ClientSetting,
    defence_name: str,
    params: dict[str, Any],
    batches: Batches,
) -> list[GradientObservation]:
    """What the server observes from every batch under the defence (seeded per batch)."""
    defence = DEFENCES.build(defence_name, **params)
    return [
        defended_update(
            task.model,
            x,
            y,
            defence,
            generator=torch.Generator().manual_seed(task.seed * 1_000_003 + b),
            **client.schedule(),
        )
        for b, (x, y, _) in enumerate(batches)
    ]


def sparsity_point(
    task: FederatedTask,
    client: ClientSetting,
    defence_name: str,
    params: dict[str, Any],
    batches: Batches,
) -> dict[str, Any]:
    """Zero entries of the batches' updates before and after the defence (cheap: not cached)."""
    clean = [client_update(task.model, x, y, **client.schedule()) for x, y, _ in batches]
    return update_sparsity(clean, observations_of(task, client, defence_name, params, batches))


def attack_point(
    task: FederatedTask,
    client: ClientSetting,
    defence_name: str,
    params: dict[str, Any],
    batches: Batches,
) -> dict[str, Any]:
    """Every attack against every batch under one defence at one strength."""
    cfg = task.cfg
    lo, hi = task.bundle.value_range
    observations = observations_of(task, client, defence_name, params, batches)
    attacks: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for acfg in cfg.attacks:
        per_batch = []
        start = time.perf_counter()
        for b, ((x, y, rows), obs) in enumerate(zip(batches, observations, strict=True)):
            attack = ATTACKS.build(acfg.name, **acfg.params)
            result = attack.invert(task.target, obs, seed=task.seed + b)
            summary, order = score_batch(
                result.images, result.labels, x, y, rows, task.pool, hi - lo
            )
            per_batch.append(summary)
            if b == 0 and cfg.examples:
                ordered = result.images[torch.as_tensor(order)][: cfg.examples]
                examples[acfg.display] = [image_hex(img, (lo, hi)) for img in ordered]
        attacks[acfg.display] = {
            **{q: mean_of(per_batch, q) for q in QUALITY},
            "per_batch": per_batch,
            "seconds": time.perf_counter() - start,
        }
    return {
        "attacks": attacks,
        "best": best_of(attacks),
        "observed_norm": float(np.mean([o.norm() for o in observations])),
        "examples": examples,
    }


def utility_point(
    task: FederatedTask,
    client: ClientSetting,
    defence_name: str,
    params: dict[str, Any],
    seed: int | None = None,
    *,
    rounds: int | None = None,
    server_lr: float | None = None,
    tuning: bool = False,
) -> dict[str, Any]:
    """FedAvg training of the task with the defence at every client (``seed``: another
    initialisation and client sampling, for the run-to-run noise floor; ``rounds``: a fixed
    length instead of the config's; ``server_lr``: instead of the config's; ``tuning``: train
    on the population, not on the members, for learning-rate tuning)."""
    u = task.cfg.utility
    assert u is not None
    seed = task.seed if seed is None else seed
    train = task.bundle.population if tuning else task.members
    if tuning and len(train) < u.clients:
        raise ValueError(
            f"utility.lr_tuning trains on the population, which has {len(train)} examples: "
            f"too few for {u.clients} clients"
        )
    result = federated_train(
        partial(task.new_model, seed),
        train,
        task.bundle.nonmembers,
        clients=u.clients,
        rounds=u.stop() if rounds is None else rounds,
        batch_size=client.batch_size,
        local_steps=client.local_steps,
        lr=client.lr,
        local_batch=client.local_batch,
        defence=DEFENCES.build(defence_name, **params),
        seed=seed,
        participation=u.participation,
        server_lr=u.server_lr if server_lr is None else server_lr,
    )
    result.pop("model")
    return result


def baselines(task: FederatedTask, batches: Batches) -> dict[str, Any]:
    """What no attack needs: the members' mean image, and uniform noise, scored like attacks."""
    lo, hi = task.bundle.value_range
    mean_image = task.members.x.mean(0, keepdim=True)
    gen = torch.Generator().manual_seed(task.seed)
    out: dict[str, Any] = {}
    for name, make in (
        ("mean_image", lambda n: mean_image.repeat(n, *([1] * (mean_image.dim() - 1)))),
        (
            "uniform_noise",
            lambda n: lo + (hi - lo) * torch.rand(n, *mean_image.shape[1:], generator=gen),
        ),
    ):
        rows = [
            score_batch(make(len(x)), y.clone(), x, y, r, task.pool, hi - lo)[0]
            for x, y, r in batches
        ]
        out[name] = {q: mean_of(rows, q) for q in ("psnr", "rmse", "ssim", "identified")}
    return out
