"""The transfer-learning setting: disjoint halves, frozen penultimate features, cached base."""

import torch

from privlab.experiment.transfer import transfer_setting


def test_features_of_the_transfer_half_from_a_cached_base(tmp_path):
    data = transfer_setting(cache_dir=tmp_path, epochs=1)
    assert data.features.shape == (2500, 256) and data.labels.shape == (2500,)
    assert torch.all(data.features >= 0)  # post-ReLU penultimate activations
    assert sorted(torch.bincount(data.labels).tolist()) == [250] * 10
    again = transfer_setting(cache_dir=tmp_path, epochs=1)
    assert again.extractor.cached and torch.equal(again.features, data.features)
