"""The transfer-learning setting: disjoint halves, frozen penultimate features, cached base."""

import pytest
import torch

from privlab.studies.reconstruction.transfer import transfer_setting


def test_features_of_the_transfer_half_from_a_cached_base(tmp_path):
    data = transfer_setting(cache_dir=tmp_path, epochs=1)
    assert data.features.shape == (2500, 256) and data.labels.shape == (2500,)
    assert torch.all(data.features >= 0)  # post-ReLU penultimate activations
    assert sorted(torch.bincount(data.labels).tolist()) == [250] * 10
    again = transfer_setting(cache_dir=tmp_path, epochs=1)
    assert again.extractor.cached and torch.equal(again.features, data.features)


def test_digits_transfer_setting_and_pseudo_identities(tmp_path):
    data = transfer_setting(dataset="digits", cache_dir=tmp_path, epochs=2)
    assert data.images.shape == (899, 1, 8, 8) and data.features.shape == (899, 256)
    ids = data.identities(4)
    assert ids.shape == (899,) and torch.equal(ids // 4, data.labels)  # styles within digits
    assert len(ids.unique()) == 40


def test_unknown_transfer_dataset_is_named(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="unknown transfer dataset 'cifar'"):
        transfer_setting(dataset="cifar", cache_dir=tmp_path)  # type: ignore[arg-type]


def test_paper_tau_is_the_whole_datasets_nearest_neighbour_mse():
    """§2: τ = mean over validation images of the MSE to the nearest training image, the whole
    dataset split 6 : 1 (its own train/test sets where it has them), images X/127.5 − 1."""
    import numpy as np
    from sklearn.datasets import load_digits

    from privlab.data.bundle import stratified_split
    from privlab.studies.reconstruction.transfer import paper_tau

    x, y = load_digits(return_X_y=True)
    images = 2 * (x / 16.0) - 1
    train, val = stratified_split(
        y, [round(len(y) * 6 / 7), len(y) - round(len(y) * 6 / 7)], seed=0
    )
    nearest = [((images[train] - images[i]) ** 2).mean(1).min() for i in val]  # brute force
    assert paper_tau("digits") == pytest.approx(float(np.mean(nearest)), rel=1e-9)


def test_paper_tau_on_full_mnist():
    import os

    from privlab.data.paper_data import HOW_TO_INSTALL, installed_folder
    from privlab.studies.reconstruction.transfer import paper_tau

    if installed_folder("mnist") is None and not os.environ.get("PRIVLAB_REQUIRE_PAPER_DATA"):
        pytest.skip(f"mnist is not installed ({HOW_TO_INSTALL['mnist']})")
    # 28×28; the paper's 0.0696 is at 32×32 (0.068 here after a bilinear resize)
    assert paper_tau("mnist") == pytest.approx(0.0985, abs=0.001)
