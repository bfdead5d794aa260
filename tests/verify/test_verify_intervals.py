"""Interval bound propagation: soundness against sampled inputs and clear refusals."""

import pytest
import torch
from torch import nn

from privlab.registry import MODELS
from privlab.verify import UnsupportedLayerError, interval_bounds

MODELS_TO_CHECK = [
    ("mlp", {"hidden": [32, 16]}),
    ("cnn_small", {"channels": [4, 8], "fc": 16}),
    ("cnn_yale", {"scale": 1}),
    ("vgg_small", {"channels": [4, 8], "fc": 16, "batch_norm": True}),
]


def _trained_bn(model):
    """Give BatchNorm layers non-trivial running statistics, then switch to eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 8, 8))
    return model.eval()


@pytest.mark.parametrize(("name", "params"), MODELS_TO_CHECK)
@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1])
def test_sampled_inputs_stay_inside_the_bounds(name, params, eps):
    torch.manual_seed(0)
    model = _trained_bn(MODELS.build(name, input_shape=(1, 8, 8), num_classes=5, **params))
    x = torch.rand(6, 1, 8, 8)
    lower, upper = interval_bounds(model, x, eps)
    assert (lower <= upper + 1e-6).all()
    for _ in range(30):
        noise = (torch.rand_like(x) * 2 - 1) * eps
        out = model((x + noise).clamp(0, 1))
        assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()
    corners = (x + eps * torch.sign(torch.randn_like(x))).clamp(0, 1)  # extreme points
    out = model(corners)
    assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()


def test_zero_radius_gives_the_exact_output():
    torch.manual_seed(1)
    model = MODELS.build("cnn_small", input_shape=(1, 8, 8), num_classes=3).eval()
    x = torch.rand(4, 1, 8, 8)
    lower, upper = interval_bounds(model, x, 0.0)
    assert torch.allclose(lower, model(x), atol=1e-5) and torch.allclose(upper, model(x), atol=1e-5)


def test_bounds_widen_with_eps_and_respect_the_input_range():
    torch.manual_seed(2)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8]).eval()
    x = torch.rand(5, 1, 4, 4)
    widths = [(u - l).mean() for l, u in (interval_bounds(model, x, e) for e in (0.01, 0.05, 0.2))]
    assert widths[0] < widths[1] < widths[2]
    # Clipping to [0, 1] makes a huge ball no looser than the whole input box.
    l_big, u_big = interval_bounds(model, x, 10.0)
    l_box, u_box = interval_bounds(model, torch.full_like(x, 0.5), 0.5)
    assert torch.allclose(l_big, l_box, atol=1e-5) and torch.allclose(u_big, u_box, atol=1e-5)


def test_unsupported_layer_is_named_with_the_supported_ones():
    model = MODELS.build("wide_resnet", input_shape=(1, 8, 8), num_classes=3).eval()
    with pytest.raises(
        UnsupportedLayerError, match=r"WideResNet; supported layers are Linear, Conv2d"
    ):
        interval_bounds(model, torch.rand(2, 1, 8, 8), 0.1)
    with pytest.raises(UnsupportedLayerError, match="Tanh"):
        interval_bounds(
            nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Tanh()), torch.rand(1, 4), 0.1
        )
    bn = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train()
    with pytest.raises(UnsupportedLayerError, match="eval mode"):
        interval_bounds(bn, torch.rand(2, 4), 0.1)


def test_ibp_training_certifies_what_natural_training_cannot():
    from privlab.metrics.utility import accuracy, verified_accuracy
    from privlab.registry import DATASETS, REGIMES
    from privlab.training.loop import TrainSpec, train

    digits = DATASETS.build("digits", seed=0)
    results = {}
    for name, params in (("natural", {}), ("ibp", {"eps": 0.05, "warmup": 0.1, "ramp": 0.5})):
        torch.manual_seed(0)
        model = MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[128])
        model = train(
            model,
            digits.members,
            REGIMES.build(name, **params),
            TrainSpec(epochs=15, batch_size=32),
            seed=0,
        ).model
        x, y = digits.nonmembers.x, digits.nonmembers.y
        results[name] = verified_accuracy(model, x, y, eps=0.05)
        assert verified_accuracy(model, x, y, eps=0.0) == pytest.approx(accuracy(model, x, y))
    assert results["ibp"] > results["natural"] + 0.3


def test_verified_confidence_is_a_lower_bound_on_the_confidence_in_the_ball():
    from privlab.registry import ATTACKS
    from privlab.threat_model import Access, Target, TargetInfo

    torch.manual_seed(3)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[16]).eval()
    target = Target(model, TargetInfo("t", 3, (1, 4, 4), eps=0.05), Access.PROBS | Access.WEIGHTS)
    x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 3, (20,))
    worst = ATTACKS.build("verified_confidence").score(target, x, y)
    for _ in range(20):
        z = (x + (torch.rand_like(x) * 2 - 1) * 0.05).clamp(0, 1)
        conf = target.predict_proba(z).gather(1, y[:, None]).squeeze(1).numpy()
        assert (worst <= conf + 1e-9).all()
    benign = ATTACKS.build("confidence").score(target, x, y)
    exact = ATTACKS.build("verified_confidence", eps=0.0).score(target, x, y)
    assert abs(exact - benign).max() < 1e-5


def test_in_place_relu_does_not_corrupt_the_trace_and_odd_padding_is_refused():
    from privlab.verify.intervals import interval_trace

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    inplace = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    inplace.load_state_dict(plain.state_dict())
    x = torch.rand(4, 1, 4, 4)
    with torch.no_grad():
        a, b = interval_trace(plain, x, 0.2), interval_trace(inplace, x, 0.2)
    assert all(
        torch.equal(p, q)
        for box_a, box_b in zip(a, b, strict=True)
        for p, q in zip(box_a, box_b, strict=True)
    )
    assert (a[1][0] < 0).any()  # the pre-activation box keeps its negative part
    reflect = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(UnsupportedLayerError, match="padding_mode"):
        interval_bounds(reflect, x, 0.1)
