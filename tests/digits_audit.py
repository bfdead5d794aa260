"""A plain PyTorch model on scikit-learn's digits for the audit tests: an MLP trained by an
ordinary full-batch loop (no privlab code) on few members, so that it overfits (a leaky model)."""

from __future__ import annotations

import torch
from torch import nn

from privlab.registry import DATASETS


def digits_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def fit_digits(x: torch.Tensor, y: torch.Tensor, seed: int = 0, epochs: int = 150) -> nn.Module:
    """An ordinary full-batch Adam loop: overfits a few hundred digits."""
    torch.manual_seed(seed)
    model = digits_net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def digits_arrays() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """120 members, 300 non-members and the population, as (x, y) tensors."""
    bundle = DATASETS.build("digits", seed=0)
    members, nonmembers = bundle.members.subset(range(120)), bundle.nonmembers.subset(range(300))
    return {
        name: (split.x, split.y)
        for name, split in (
            ("members", members),
            ("nonmembers", nonmembers),
            ("population", bundle.population),
        )
    }
