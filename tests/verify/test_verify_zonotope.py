"""Hybrid zonotope bounds (DiffAI) and the zonotope training regime."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privlab.metrics.utility import verified_accuracy
from privlab.registry import MODELS, REGIMES
from privlab.training.loop import TrainSpec, train
from privlab.verify.crown import margin_spec
from privlab.verify.intervals import UnsupportedLayerError, interval_bounds
from privlab.verify.zonotope import (
    HybridZonotope,
    propagate,
    zonotope_bounds,
)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 5),
    )


def _with_bn_stats(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, then switch to eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 8, 8) * 2)
    return model.eval()


MODELS_TO_CHECK = {
    "mlp": lambda: MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=5, hidden=[32, 16]),
    "cnn_small": lambda: MODELS.build(
        "cnn_small", input_shape=(1, 8, 8), num_classes=5, channels=[4, 8], fc=16
    ),
    "cnn_avgpool_bn": _small_cnn,
    "vgg_maxpool_bn": lambda: MODELS.build(
        "vgg_small", input_shape=(1, 8, 8), num_classes=5, channels=[4, 8], fc=16, batch_norm=True
    ),
}


def _spec_image(spec: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return (spec @ out.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("name", sorted(MODELS_TO_CHECK))
@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_sampled_inputs_and_margins_stay_inside_the_bounds(name, eps):
    torch.manual_seed(0)
    model = _with_bn_stats(MODELS_TO_CHECK[name]())
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 5, (6,))
    specs = [_rivals(y, 5), torch.randn(6, 3, 5)]
    with torch.no_grad():
        lower, upper = zonotope_bounds(model, x, eps)
        spec_bounds = [zonotope_bounds(model, x, eps, spec=s) for s in specs]
        assert (lower <= upper).all()
        noise = (torch.rand(200, *x.shape) * 2 - 1) * eps
        corners = eps * torch.sign(torch.randn(100, *x.shape))  # extreme points of the ball
        delta = torch.cat([noise, corners])  # samples × batch × input, one forward pass
        out = model((x + delta).clamp(0, 1).flatten(0, 1)).view(len(delta), len(x), -1)
        assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()
        for s, (s_low, s_up) in zip(specs, spec_bounds, strict=True):
            image = torch.einsum("bmk,nbk->nbm", s, out)
            assert (image >= s_low - 1e-5).all() and (image <= s_up + 1e-5).all()


def test_affine_networks_are_bounded_exactly():
    torch.manual_seed(1)
    x = torch.rand(4, 1, 8, 8)
    eps, clip = 0.1, (0.0, 1.0)
    lo, hi = (x - eps).clamp(*clip), (x + eps).clamp(*clip)
    centre, radius = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)

    # Linear layers: the composed map, computed by hand.
    layers = [nn.Linear(64, 20), nn.Linear(20, 12), nn.Linear(12, 3)]
    mlp = nn.Sequential(nn.Flatten(), *layers).eval()
    w_total, b_total = torch.eye(64), torch.zeros(64)
    for layer in layers:
        w_total, b_total = layer.weight @ w_total, layer.weight @ b_total + layer.bias
    with torch.no_grad():
        mid = centre @ w_total.T + b_total
        rad = radius @ w_total.abs().T
        lower, upper = zonotope_bounds(mlp, x, eps, clip)
        assert torch.allclose(lower, mid - rad, atol=1e-5)
        assert torch.allclose(upper, mid + rad, atol=1e-5)
        ibp_lower, ibp_upper = interval_bounds(mlp, x, eps, clip)  # |W3||W2||W1| r: looser
        assert ((ibp_upper - ibp_lower) > (upper - lower) + 1e-3).all()
        spec = torch.randn(4, 2, 3)  # a spec is affine too: exact through spec @ W_total
        s_low, s_up = zonotope_bounds(mlp, x, eps, clip, spec=spec)
        s_rad = (radius.unsqueeze(1) * (spec @ w_total).abs()).sum(-1)
        assert torch.allclose(s_low, _spec_image(spec, mid) - s_rad, atol=1e-5)
        assert torch.allclose(s_up, _spec_image(spec, mid) + s_rad, atol=1e-5)

    # Conv / BatchNorm / pooling: the Jacobian of the (affine) network from autograd.
    conv = _with_bn_stats(
        nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            nn.AvgPool2d(2),
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 6),
            nn.BatchNorm1d(6),
            nn.Identity(),
        )
    )
    jac = torch.autograd.functional.jacobian(lambda v: conv(v.view(1, 1, 8, 8))[0], centre[0])
    with torch.no_grad():
        mid = conv(centre.view(-1, 1, 8, 8))
        rad = radius @ jac.abs().T
        lower, upper = zonotope_bounds(conv, x, eps, clip)
    assert torch.allclose(lower, mid - rad, atol=1e-5)
    assert torch.allclose(upper, mid + rad, atol=1e-5)


def _boxed_margin_upper(model, x, eps, spec):
    """The same propagation with the input generators moved into the box term ``b``."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    centre = (hi + lo) / 2
    zero_generator = centre.new_zeros(len(x), 1, *x.shape[1:])  # keeps the zonotope ReLU
    start = HybridZonotope(centre, zero_generator, (hi - lo) / 2)
    out = propagate(model, start)[-1]
    radius = (spec.abs() @ out.box.unsqueeze(-1)).squeeze(-1)
    return _spec_image(spec, out.centre) + radius


def _rivals(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows e_j − e_y (zero row j = y): upper bounds of spec @ logits bound ub(z_j − z_y)."""
    return -margin_spec(y, num_classes)


def test_zonotope_margins_are_tighter_than_intervals_for_a_shallow_relu_net():
    torch.manual_seed(2)
    model = MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=5, hidden=[32]).eval()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 5, (32,))
    spec = _rivals(y, 5)
    with torch.no_grad():
        for eps in (0.05, 0.1):
            _, zono = zonotope_bounds(model, x, eps, spec=spec)
            lower, upper = interval_bounds(model, x, eps)
            ibp = _spec_image(spec.clamp(min=0), upper) + _spec_image(spec.clamp(max=0), lower)
            assert (zono <= ibp + 1e-5).float().mean() > 0.9
            assert zono.mean() < ibp.mean() - 0.1
            # Without the generators the ReLU relaxation alone is looser than IBP's.
            assert _boxed_margin_upper(model, x, eps, spec).mean() > ibp.mean()


def test_max_pool_falls_back_to_the_box_domain():
    """From a MaxPool on, the zonotope is a box and every layer computes what IBP computes."""
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        zono = zonotope_bounds(model, x, 0.1)
        ibp = interval_bounds(model, x, 0.1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(zono, ibp, strict=True))


@pytest.mark.parametrize("name", sorted(MODELS_TO_CHECK))
def test_zero_radius_gives_the_exact_output(name):
    torch.manual_seed(3)
    model = _with_bn_stats(MODELS_TO_CHECK[name]())
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 5, (4,))
    with torch.no_grad():
        lower, upper = zonotope_bounds(model, x, 0.0)
        assert torch.equal(lower, upper)
        assert torch.allclose(lower, model(x), atol=1e-5)
        spec = _rivals(y, 5)
        s_low, s_up = zonotope_bounds(model, x, 0.0, spec=spec)
        assert torch.equal(s_low, s_up)
        assert torch.allclose(s_low, _spec_image(spec, model(x)), atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn_avgpool_bn"])
def test_gradients_reach_every_weight(name):
    torch.manual_seed(4)
    model = _with_bn_stats(MODELS_TO_CHECK[name]())
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 5, (8,))
    lower, upper = zonotope_bounds(model, x, 0.1)
    _, margin = zonotope_bounds(model, x, 0.1, spec=_rivals(y, 5))
    ((upper - lower).sum() + margin.sum()).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


def test_bad_spec_and_eps_are_refused():
    with pytest.raises(ValueError, match="spec must be"):
        zonotope_bounds(nn.Linear(4, 3), torch.rand(2, 4), 0.1, spec=torch.ones(2, 1, 4))
    with pytest.raises(ValueError, match="non-negative"):
        zonotope_bounds(nn.Linear(4, 3), torch.rand(2, 4), -0.1)


def test_unsupported_layer_is_named_with_the_supported_ones():
    model = MODELS.build("wide_resnet", input_shape=(1, 8, 8), num_classes=3).eval()
    with pytest.raises(
        UnsupportedLayerError, match=r"WideResNet; supported layers are Linear, Conv2d, ReLU"
    ):
        zonotope_bounds(model, torch.rand(2, 1, 8, 8), 0.1)
    with pytest.raises(UnsupportedLayerError, match=r"Tanh; supported layers are .*MaxPool2d"):
        zonotope_bounds(
            nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Tanh()), torch.rand(1, 4), 0.1
        )
    bn = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train()
    with pytest.raises(UnsupportedLayerError, match="eval mode"):
        zonotope_bounds(bn, torch.rand(2, 4), 0.1)


def test_regime_reuses_the_ibp_schedule_and_uses_the_softplus_margin_loss():
    from privlab.training.regimes.ibp import IntervalBoundTraining

    regime = REGIMES.build("zonotope", eps=0.1, kappa=0.0, warmup=0.0, ramp=0.5)
    assert isinstance(regime, IntervalBoundTraining) and type(regime).verifier == "zonotope"
    assert regime.name == "zonotope" and regime.budget() == (0.1, "linf")
    assert set(regime.params()) == {"clip", "eps", "kappa", "warmup", "ramp"}
    ibp = REGIMES.build("ibp", eps=0.1, kappa=0.0, warmup=0.0, ramp=0.5)
    for epoch in range(4):
        regime.start_epoch(epoch, 4)
        ibp.start_epoch(epoch, 4)
        assert regime._schedule == ibp._schedule

    torch.manual_seed(5)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8])
    x, y = torch.rand(10, 1, 4, 4), torch.randint(0, 3, (10,))
    _, margins = zonotope_bounds(model, x, 0.1, spec=_rivals(y, 3))  # ub(z_j − z_y)
    worst = torch.stack([margins[i, torch.arange(3) != y[i]].max() for i in range(len(y))])
    expected = torch.log1p(torch.exp(worst)).mean()  # Song et al. Eq. 14
    assert torch.isclose(regime.loss(model, x, y), expected, atol=1e-6)  # κ = 0, ε = 0.1
    regime.start_epoch(0, 4)  # ε = 0 at the start of the ramp: natural training
    assert torch.isclose(regime.loss(model, x, y), F.cross_entropy(model(x), y))


def test_zonotope_training_certifies_more_than_natural_training(tiny):
    eps = 0.1
    verified = {}
    for name, params in (("natural", {}), ("zonotope", {"eps": eps})):
        torch.manual_seed(0)
        model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[32])
        regime = REGIMES.build(name, **params)
        model = train(
            model, tiny.members, regime, TrainSpec(epochs=20, batch_size=32, lr=1e-2), seed=0
        ).model
        verified[name] = {
            split: verified_accuracy(model, data.x, data.y, eps=eps, verifier="zonotope")
            for split, data in (("train", tiny.members), ("test", tiny.nonmembers))
        }
    assert verified["zonotope"]["train"] > verified["natural"]["train"] + 0.1
    assert verified["zonotope"]["test"] >= verified["natural"]["test"]  # held out: smaller gain
