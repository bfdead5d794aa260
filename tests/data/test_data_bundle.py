import numpy as np
import pytest
import torch

from privlab.data import make_bundle, stratified_split
from privlab.registry import DATASETS


def _disjoint(bundle):
    rows = [
        tuple(r)
        for s in (bundle.members, bundle.nonmembers, bundle.population)
        for r in s.x.flatten(1).numpy().round(6)
    ]
    return len(rows) == len(set(rows))


@pytest.mark.parametrize("name", ["digits", "mnist5k", "synthetic"])
def test_embedded_datasets(name):
    b = DATASETS.build(name, seed=0)
    assert b.members.x.dtype == torch.float32
    assert b.members.x.min() >= 0 and b.members.x.max() <= 1
    assert b.input_shape == tuple(b.members.x.shape[1:])
    assert b.num_classes == len(b.class_names)
    assert set(b.members.y.unique().tolist()) == set(range(b.num_classes))


def test_digits_and_mnist5k_sizes():
    d = DATASETS.build("digits")
    assert (len(d.members), len(d.nonmembers), len(d.population)) == (599, 599, 599)
    m = DATASETS.build("mnist5k")
    assert (len(m.members), len(m.nonmembers), len(m.population)) == (2000, 2000, 1000)
    assert m.input_shape == (1, 28, 28)


def test_splits_are_seeded_disjoint_and_class_balanced():
    a, b, c = (DATASETS.build("digits", seed=s) for s in (0, 0, 1))
    assert a.hashes() == b.hashes()
    assert a.hashes() != c.hashes()
    assert _disjoint(a)
    counts = np.bincount(a.members.y.numpy())
    assert counts.max() - counts.min() <= 3


def test_stratified_split_is_pure_and_balanced_per_prefix():
    y = np.repeat(np.arange(5), 40)
    p1 = stratified_split(y, [50, 50], seed=3)
    p2 = stratified_split(y, [50, 50], seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(p1, p2, strict=True))
    assert set(np.bincount(y[p1[0]]).tolist()) == {10}
    with pytest.raises(ValueError, match="exceed"):
        stratified_split(y, [150, 100], seed=0)


def test_sizes_as_counts_or_fractions_and_errors():
    x, y = torch.rand(100, 1, 2, 2), torch.arange(100) % 2
    b = make_bundle("t", x, y, members=30, nonmembers=0.2)
    assert (len(b.members), len(b.nonmembers), len(b.population)) == (30, 20, 50)
    with pytest.raises(ValueError, match="exceeds"):
        make_bundle("t", x, y, members=0.6, nonmembers=0.6)
    with pytest.raises(ValueError, match="outside the declared range"):
        make_bundle("t", x * 3, y)
