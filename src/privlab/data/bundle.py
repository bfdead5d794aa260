"""DataBundle: members, non-members and the attacker's disjoint population, with seeded splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent.

    The message always names the file (or folder) and what is wrong with it.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class Split:
    """A labelled set of examples: ``x`` is float32 N×C×H×W (or N×D) in the bundle's value range."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor | np.ndarray) -> Split:
        idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return Split(self.x[idx_t], self.y[idx_t])

    def sha256(self) -> str:
        """Content hash of the split (data and labels), recorded in reports."""
        h = hashlib.sha256()
        h.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class DataBundle:
    """Everything an experiment needs from a dataset.

    ``members`` train the target, ``nonmembers`` are held out (utility and membership
    evaluation), ``population`` is the attacker's auxiliary data, disjoint from both.
    """

    name: str
    members: Split
    nonmembers: Split
    population: Split
    num_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] = (0.0, 1.0)
    class_names: tuple[str, ...] = field(default=())
    feature_names: tuple[str, ...] | None = None

    def hashes(self) -> dict[str, str]:
        return {
            "members": self.members.sha256(),
            "nonmembers": self.nonmembers.sha256(),
            "population": self.population.sha256(),
        }


def _resolve_count(value: float, total: int, what: str) -> int:
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    count = round(value * total) if value <= 1 else int(value)
    if count > total:
        raise ValueError(f"{what}={value} asks for {count} examples but only {total} exist")
    return count


def stratified_split(y: np.ndarray, sizes: list[int], *, seed: int) -> list[np.ndarray]:
    """Split indices into consecutive parts of the given sizes, each class spread evenly.

    Pure function of ``(y, sizes, seed)``: the same seed always gives the same split.
    """
    if sum(sizes) > len(y):
        raise ValueError(f"split sizes {sizes} exceed the {len(y)} available examples")
    rng = np.random.default_rng(seed)
    # Interleave shuffled per-class index lists so every prefix is close to class-balanced.
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order_keys = np.concatenate(
        [(np.arange(len(ix)) + rng.random()) / max(len(ix), 1) for ix in per_class]
    )
    all_idx = np.concatenate(per_class)
    interleaved = all_idx[np.argsort(order_keys, kind="stable")]
    parts, start = [], 0
    for size in sizes:
        parts.append(np.sort(interleaved[start : start + size]))
        start += size
    return parts


def make_bundle(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
    class_names: tuple[str, ...] = (),
    value_range: tuple[float, float] = (0.0, 1.0),
    feature_names: tuple[str, ...] | None = None,
) -> DataBundle:
    """Build a bundle from a whole dataset with a seeded, class-stratified split.

    Sizes are fractions of the dataset (≤ 1) or absolute counts (> 1); the population
    takes what is left unless given. ``feature_names``: one name per column of N×d inputs.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    total = len(y)
    n_in = _resolve_count(members, total, "members")
    n_out = _resolve_count(nonmembers, total, "nonmembers")
    rest = total - n_in - n_out
    if rest < 0:
        raise ValueError(f"members + nonmembers = {n_in + n_out} exceeds the {total} examples")
    n_pop = rest if population is None else _resolve_count(population, total, "population")
    if n_pop > rest:
        raise ValueError(f"population={population} asks for {n_pop} but only {rest} are left")
    idx_in, idx_out, idx_pop = stratified_split(y.numpy(), [n_in, n_out, n_pop], seed=seed)
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    if feature_names is not None and (x.dim() != 2 or len(feature_names) != x.shape[1]):
        raise ValueError(
            f"{name}: {len(feature_names)} feature names for inputs of shape {tuple(x.shape[1:])}"
        )
    lo, hi = value_range
    if len(x) and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
        raise ValueError(f"{name}: values outside the declared range {value_range}")
    return DataBundle(
        name=name,
        members=Split(x[idx_in], y[idx_in]),
        nonmembers=Split(x[idx_out], y[idx_out]),
        population=Split(x[idx_pop], y[idx_pop]),
        num_classes=k,
        input_shape=tuple(x.shape[1:]),
        value_range=value_range,
        class_names=class_names or tuple(str(c) for c in range(k)),
        feature_names=feature_names,
    )


def class_subset(split: Split, classes: list[int]) -> Split:
    """The examples of ``classes``, relabelled 0..k−1 in the order given."""
    keep = torch.isin(split.y, torch.tensor(classes))
    remap = torch.full((int(max(classes)) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return Split(split.x[keep], remap[split.y[keep]])


def restrict_classes(bundle: DataBundle, classes: list[int]) -> DataBundle:
    """Keep only ``classes`` of every split (relabelled in the order given)."""
    bad = sorted({c for c in classes if not 0 <= c < bundle.num_classes})
    if bad or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct and among 0–{bundle.num_classes - 1} "
            f"({', '.join(bundle.class_names)}); got {classes}"
        )
    return DataBundle(
        name=bundle.name,
        members=class_subset(bundle.members, classes),
        nonmembers=class_subset(bundle.nonmembers, classes),
        population=class_subset(bundle.population, classes),
        num_classes=len(classes),
        input_shape=bundle.input_shape,
        value_range=bundle.value_range,
        class_names=tuple(bundle.class_names[c] for c in classes),
        feature_names=bundle.feature_names,
    )
