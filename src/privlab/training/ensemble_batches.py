"""Batches of K models at once, drawn exactly as the training loop's loaders draw them.

Model k's batches come from ``torch.Generator().manual_seed(seeds[k])`` with the same calls
a ``DataLoader(shuffle=True)`` (or Opacus' Poisson ``DPDataLoader``) makes, so an ensemble
member sees the very batches its sequential run would. Batches are index tables into the
pool, padded to the largest model's batch with a weight mask (the padding repeats one of
the model's own members, so no model reads data outside its mask).
"""

from __future__ import annotations

import math

import torch

from privlab.training.dp import poisson_mask


def base_seed_draw(gen: torch.Generator) -> None:
    """The int64 each DataLoader iterator draws from the loader's generator (worker seed)."""
    torch.empty((), dtype=torch.int64).random_(generator=gen)


class ShuffledBatches:
    """Per epoch, every model's DataLoader(shuffle=True) batches as padded index tables."""

    def __init__(self, members: list[torch.Tensor], batch_size: int, seeds: list[int]) -> None:
        self.members = members
        self.n = torch.tensor([len(m) for m in members])
        self.b = self.n.clamp(max=batch_size)
        self.steps_per_epoch = (self.n + self.b - 1) // self.b
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index K×S×B into the pool, weight K×S×B) for one epoch."""
        k_count, n_max = len(self.members), int(self.n.max())
        table = torch.zeros(k_count, n_max, dtype=torch.long)
        for k, (gen, mem) in enumerate(zip(self.gens, self.members, strict=True)):
            base_seed_draw(gen)
            perm = torch.randperm(len(mem), generator=gen)
            torch.randperm(len(mem), generator=gen)  # RandomSampler's (empty) remainder draw
            table[k, : len(mem)] = mem[perm]
        s_max, b_max = int(self.steps_per_epoch.max()), int(self.b.max())
        j = torch.arange(b_max).view(1, 1, -1)
        pos = torch.arange(s_max).view(1, -1, 1) * self.b.view(-1, 1, 1) + j
        valid = (j < self.b.view(-1, 1, 1)) & (pos < self.n.view(-1, 1, 1))
        idx = table.gather(1, pos.clamp(max=n_max - 1).view(k_count, -1)).view(pos.shape)
        return torch.where(valid, idx, table[:, :1, None]), valid  # pad with a member


class PoissonBatches:
    """Per epoch, every model's Opacus DPDataLoader batches (Poisson sampling, drawn by
    :func:`privlab.training.dp.poisson_mask`). A model's empty draw is still one of its steps."""

    def __init__(self, members: list[torch.Tensor], batch_size: int, seeds: list[int]) -> None:
        self.members = members
        self.n = [len(m) for m in members]
        lengths = [math.ceil(n / min(batch_size, n)) for n in self.n]  # len(DataLoader)
        self.sample_rate = [1.0 / length for length in lengths]
        self.steps_per_epoch = [int(1 / q) for q in self.sample_rate]
        self.expected_batch_size = torch.tensor(
            [int(n * q) for n, q in zip(self.n, self.sample_rate, strict=True)]
        )
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]

    def epoch(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per step: (index K×B into the pool, weight K×B, stepping K), B the step's largest
        batch but at least 1 (so a step where every batch is empty still has a padded
        example); ``stepping[k]``: the step is one of model k's, empty batch or not."""
        k_count, n_max, s_max = len(self.members), max(self.n), max(self.steps_per_epoch)
        selected = torch.zeros(k_count, s_max, n_max, dtype=torch.bool)
        table = torch.zeros(k_count, n_max, dtype=torch.long)
        for k, gen in enumerate(self.gens):
            n, q, steps = self.n[k], self.sample_rate[k], self.steps_per_epoch[k]
            base_seed_draw(gen)
            selected[k, :steps, :n] = poisson_mask((steps, n), q, gen)
            table[k, :n] = self.members[k]
        counts = selected.sum(dim=2)  # K×S
        order = torch.sort(selected.to(torch.int8), dim=2, descending=True, stable=True).indices
        stepping = torch.arange(s_max).view(1, -1) < torch.tensor(self.steps_per_epoch).view(-1, 1)
        batches = []
        for s, b in enumerate(counts.max(dim=0).values.clamp(min=1).tolist()):
            pos = order[:, s, :b]
            valid = torch.arange(b).view(1, -1) < counts[:, s].view(-1, 1)
            idx = torch.where(valid, table.gather(1, pos), table[:, :1])  # pad with a member
            batches.append((idx, valid, stepping[:, s]))
        return batches
