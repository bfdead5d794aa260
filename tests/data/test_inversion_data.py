"""Private/public class splits, pseudo-identities and the masked-pixel invariance check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from privlab.data.bundle import restrict_classes
from privlab.data.embedded import pseudo_identities
from privlab.registry import MODELS, REGIMES
from privlab.studies.targets.inversion import masked_invariance


def test_restrict_classes_relabels_in_the_given_order(tiny):
    sub = restrict_classes(tiny, [3, 1])
    assert sub.num_classes == 2 and sub.class_names == ("3", "1")
    for split, orig in ((sub.members, tiny.members), (sub.nonmembers, tiny.nonmembers)):
        assert torch.equal(split.x, orig.x[(orig.y == 3) | (orig.y == 1)])
        assert set(split.y.tolist()) == {0, 1}
        assert torch.equal(split.y == 0, orig.y[(orig.y == 3) | (orig.y == 1)] == 3)
    with pytest.raises(ValueError, match="0–3"):
        restrict_classes(tiny, [0, 9])


def test_pseudo_identities_split_each_class_deterministically():
    rng = np.random.default_rng(0)
    # two digits, each a mixture of two clearly separated "styles"
    centres = rng.random((4, 16)) * 4
    x = np.concatenate([centres[i] + 0.05 * rng.standard_normal((30, 16)) for i in range(4)])
    y = np.repeat([0, 0, 1, 1], 30)
    ids = pseudo_identities(x.astype(np.float32), y, 2)
    assert np.array_equal(ids, pseudo_identities(x.astype(np.float32), y, 2))
    assert set(ids[y == 0]) == {0, 1} and set(ids[y == 1]) == {2, 3}
    # every style is one cluster: the 30 images of a centre share one identity
    for i in range(4):
        assert len(set(ids[30 * i : 30 * (i + 1)])) == 1


def test_masked_pixels_cannot_change_the_output(tiny):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[16])
    regime = dataclasses.replace(REGIMES.build("drop_layer"), input_shape=tiny.input_shape)
    model = regime.adapt_model(model).eval()
    assert (
        masked_invariance(MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=4), tiny.members.x)
        is None
    )
    mask = model[0]
    with torch.no_grad():
        mask.weight[..., :4] = 0.0
    mask.drop(1e-6)  # drop the left half of every row
    check = masked_invariance(model, tiny.members.x[:32])
    assert check["pixels_kept"] == 32 and check["pixels_total"] == 64
    assert check["identical_outputs"] and check["max_logit_change"] == 0.0

    class Bypass(torch.nn.Module):  # a model that reads the raw input past its mask
        def __init__(self) -> None:
            super().__init__()
            self.masked, self.raw = model, torch.nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.masked(x) + self.raw(x.flatten(1))

    assert not masked_invariance(Bypass(), tiny.members.x[:32])["identical_outputs"]
