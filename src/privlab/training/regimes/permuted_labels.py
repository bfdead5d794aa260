"""Training on permuted labels: pure memorisation (the AT-AT paper's C0.2; SPEC §1, D10).

The replication code permutes the training targets once (``torch.randperm``) before training,
so the labels carry no information about the images: the model can only memorise, reaching
high training accuracy on the permuted labels and chance accuracy on held-out data. The
paper finds such maximally memorising models still resist model inversion.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.registry import REGIMES
from privlab.training.regime import Regime


@REGIMES.register("permuted_labels")
@dataclasses.dataclass(frozen=True, kw_only=True)
class PermutedLabels(Regime):
    """Natural training on a fixed random permutation of the training labels (memorisation)."""

    name = "permuted_labels"
    permutation_seed: int = 0

    def train_labels(self, y: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.permutation_seed)
        return y[torch.randperm(len(y), generator=gen).to(y.device)]

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        dataset = loader.dataset
        if not isinstance(dataset, TensorDataset):
            raise TypeError("permuted_labels needs the training loop's TensorDataset loader")
        x, y, *positions = dataset.tensors  # the loop's tensors: x, y, training positions
        permuted = self.train_labels(y)
        relabelled = DataLoader(
            TensorDataset(x, permuted, *positions),
            batch_size=loader.batch_size,
            shuffle=True,
            generator=loader.generator,
        )
        return model, optimizer, relabelled
