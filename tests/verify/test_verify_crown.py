"""CROWN bounds: sound on sampled inputs and never looser than IBP."""

import pytest
import torch

from privlab.registry import MODELS
from privlab.verify import UnsupportedLayerError, interval_bounds
from privlab.verify.crown import crown_bounds


@pytest.mark.parametrize("hidden", [[16], [32, 16], [24, 24, 12]])
@pytest.mark.parametrize("eps", [0.0, 0.02, 0.1])
def test_crown_is_sound_and_never_looser_than_ibp(hidden, eps):
    torch.manual_seed(len(hidden))
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=5, hidden=hidden).eval()
    x = torch.rand(8, 1, 4, 4)
    lower, upper = crown_bounds(model, x, eps)
    with torch.no_grad():
        ibp_low, ibp_up = interval_bounds(model, x, eps)
        assert (lower >= ibp_low - 1e-6).all() and (upper <= ibp_up + 1e-6).all()
        for _ in range(50):
            z = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)
            out = model(z)
            assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()


def test_crown_is_strictly_tighter_than_ibp_on_deeper_networks():
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=5, hidden=[32, 32, 32]).eval()
    x = torch.rand(16, 1, 4, 4)
    lower, upper = crown_bounds(model, x, 0.05)
    with torch.no_grad():
        ibp_low, ibp_up = interval_bounds(model, x, 0.05)
    assert (upper - lower).mean() < 0.9 * (ibp_up - ibp_low).mean()


def test_unsupported_models_are_refused_with_a_clear_error():
    model = MODELS.build("wide_resnet", input_shape=(1, 8, 8), num_classes=3).eval()
    with pytest.raises(UnsupportedLayerError, match="WideResNet; supported layers are Linear"):
        crown_bounds(model, torch.rand(2, 1, 8, 8), 0.1)
