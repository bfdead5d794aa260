"""The transfer-learning setting: disjoint halves, frozen penultimate features, cached base."""

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
