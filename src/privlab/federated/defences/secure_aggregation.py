"""Secure aggregation (Bonawitz et al. 2017; Liu et al. 2025, Prop. 3.2's aggregation bound).

The server learns only the aggregate of ``clients`` clients' updates, not any single one. In
:meth:`SecureAggregation.apply` the batch (x, y) holds all the participants' data: it is split
in order into ``clients`` contiguous shards of near-equal size (``torch.tensor_split``), every
shard's client computes its own update with the given schedule, and the observation carries

    mean: Σ_k (n_k/N)·G_k   (FedAvg's example-weighted average)   or   sum: Σ_k G_k

with batch_size = N, the total number of examples. With one local step the mean is exactly the
gradient of the whole batch (a batch of N at one client), which is the attack's target.

With several local steps the observation keeps the clients' schedule (``local_steps``, ``lr``,
``local_batch``), but an attack that replays it over all N examples simulates one client
holding everything; the true aggregate of separately trained clients differs (an
approximation, exact for one step).

In federated training the server's averaging already is the aggregation, so each client
applies no defence (:meth:`training_defence`): secure aggregation costs no accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from torch import nn

from privlab.federated.client import check_client_args, client_update, observation_of
from privlab.federated.defences.base import (
    DEFENCES,
    Defence,
)
from privlab.federated.observation import GradientObservation


@DEFENCES.register("secure_aggregation")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SecureAggregation(Defence):
    """The server sees only the aggregate (mean or sum) of ``clients`` clients' updates."""

    name: ClassVar[str] = "secure_aggregation"
    acts_on_update: ClassVar[bool] = False
    clients: int = 2
    reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if isinstance(self.clients, bool) or not isinstance(self.clients, int) or self.clients < 1:
            raise ValueError(f"clients must be an integer ≥ 1, got clients={self.clients!r}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")

    def shards(self, n: int) -> list[torch.Tensor]:
        """Row indices of every client's shard (contiguous, sizes differ by at most one)."""
        if n < self.clients:
            raise ValueError(f"{self.clients} clients need at least as many examples, got {n}")
        return list(torch.tensor_split(torch.arange(n), self.clients))

    def client_updates(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        local_steps: int = 1,
        lr: float = 0.1,
        local_batch: int | None = None,
    ) -> list[GradientObservation]:
        """The individual updates that the aggregate hides (what the server never sees)."""
        check_client_args(x, y, local_steps, lr, local_batch)
        return [
            client_update(
                model,
                x[rows],
                y[rows],
                local_steps=local_steps,
                lr=lr,
                local_batch=None if local_batch is None else min(local_batch, len(rows)),
            )
            for rows in self.shards(len(x))
        ]

    def apply(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        local_steps: int = 1,
        lr: float = 0.1,
        local_batch: int | None = None,
    ) -> GradientObservation:
        updates = self.client_updates(
            model, x, y, local_steps=local_steps, lr=lr, local_batch=local_batch
        )
        total = len(x)
        aggregate: dict[str, torch.Tensor] = {}
        for name in updates[0].gradients:
            parts = [u.gradients[name] for u in updates]
            if self.reduction == "mean":
                parts = [u.batch_size / total * g for u, g in zip(updates, parts, strict=True)]
            aggregate[name] = torch.stack(parts).sum(0)
        return observation_of(aggregate, total, local_steps, lr, local_batch)

    def training_defence(self) -> Defence:
        from privlab.federated.defences.none import NoDefence

        return NoDefence()
