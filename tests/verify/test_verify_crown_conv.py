"""CROWN / CROWN-IBP on convolutional models: sound, exact on linear maps, never looser than IBP,
differentiable, and a CROWN-IBP training regime that certifies more than natural training."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import MODELS
from privlab.verify import (
    UnsupportedLayerError,
    crown_bounds,
    crown_ibp_bounds,
    interval_bounds,
    interval_spec_bounds,
    margin_spec,
    worst_case_from_margins,
)

SHAPE = (1, 8, 8)
CLASSES = 5


@pytest.fixture(autouse=True)
def _single_thread():
    """These tiny models gain nothing from intra-op threads, while a 2-thread OpenMP pool on a
    busy 2-core machine was seen to stall a 1.5 s test for 30 s: run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise_batch_norm(model: nn.Module) -> nn.Module:
    """Non-trivial affine parameters and running statistics, then eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.uniform_(-1.5, 1.5)  # negative scales flip the bounds
                m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.3, 2.0)
    return model.eval()


def _model(name: str) -> nn.Module:
    torch.manual_seed(sum(map(ord, name)))  # stable across processes (unlike hash)
    conv = nn.Conv2d
    models = {
        "cnn_small": lambda: MODELS.build(
            "cnn_small", input_shape=SHAPE, num_classes=CLASSES, channels=[3, 4], fc=12
        ),
        "avgpool": lambda: nn.Sequential(
            conv(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            conv(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(16, CLASSES),
        ),
        "maxpool_2x2": lambda: nn.Sequential(
            conv(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(48, 10), nn.ReLU(), nn.Linear(10, CLASSES),
        ),
        "maxpool_overlapping": lambda: nn.Sequential(
            nn.MaxPool2d(2, 1),  # straight on the input box (7×7)
            conv(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),  # → 4×4
            conv(3, 4, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64, CLASSES),
        ),
        "batch_norm": lambda: _randomise_batch_norm(nn.Sequential(
            conv(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
            conv(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(10, CLASSES),
        )),
        "odd_convs": lambda: nn.Sequential(
            conv(1, 4, 3, padding="same", dilation=2), nn.ReLU(),
            conv(4, 4, 2, stride=3, groups=2), nn.ReLU(),  # 8 → 3, skips rows 2 and 5
            nn.Flatten(), nn.Identity(), nn.Linear(36, CLASSES),
        ),
        "mlp": lambda: MODELS.build(
            "mlp", input_shape=SHAPE, num_classes=CLASSES, hidden=[16, 16]
        ),
    }  # fmt: skip
    return models[name]().eval()


MODEL_NAMES = [
    "cnn_small", "avgpool", "maxpool_2x2", "maxpool_overlapping", "batch_norm", "odd_convs", "mlp",
]  # fmt: skip


def _ball_samples(x: torch.Tensor, eps: float, n: int) -> torch.Tensor:
    """n uniform points and n corners of B_ε(x) ∩ [0, 1] per example: (2n·B) × shape."""
    xs = x.expand(n, *x.shape)
    uniform = xs + (torch.rand_like(xs) * 2 - 1) * eps
    corners = xs + torch.sign(torch.randn_like(xs)) * eps
    return torch.cat([uniform, corners]).clamp(0, 1).flatten(0, 1)


def _attack(model, x, spec, eps, steps=6):
    """Signed-gradient descent on every spec row (B × m): values near the lower bounds."""
    b, m = spec.shape[:2]
    centre = x.repeat_interleave(m, 0)
    z = centre.clone()
    rows = spec.flatten(0, 1)
    for _ in range(steps):
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad((model(z) * rows).sum(), z)
        z = z.detach() - eps / 4 * grad.sign()
        z = torch.min(torch.max(z, centre - eps), centre + eps).clamp(0, 1)
    with torch.no_grad():
        return (model(z) * rows).sum(-1).view(b, m)


@pytest.mark.parametrize("intermediate", ["crown", "ibp"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sampled_and_attacked_outputs_stay_inside_the_bounds(name, intermediate):
    model = _model(name)
    torch.manual_seed(1)
    x, y = torch.rand(4, *SHAPE), torch.randint(0, CLASSES, (4,))
    spec = margin_spec(y, CLASSES)
    for eps in (0.03, 0.15):
        with torch.no_grad():
            lower, upper = crown_bounds(model, x, eps, intermediate=intermediate)
            m_low, m_up = crown_bounds(model, x, eps, spec=spec, intermediate=intermediate)
            out = model(_ball_samples(x, eps, 50)).view(-1, *lower.shape)
            margins = torch.einsum("bmn,sbn->sbm", spec, out)
            ibp_low, ibp_up = interval_bounds(model, x, eps)
            spec_low, spec_up = interval_spec_bounds(model, x, eps, spec=spec)
        assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()
        assert (margins >= m_low - 1e-5).all() and (margins <= m_up + 1e-5).all()
        attacked = _attack(model, x, spec, eps)
        assert (attacked >= m_low - 1e-5).all()
        # never looser than IBP, on outputs and on margins
        assert (lower >= ibp_low - 1e-6).all() and (upper <= ibp_up + 1e-6).all()
        assert (m_low >= spec_low - 1e-6).all() and (m_up <= spec_up + 1e-6).all()
        box_low = torch.einsum("bmn,bn->bm", spec.clamp(min=0), ibp_low) + torch.einsum(
            "bmn,bn->bm", spec.clamp(max=0), ibp_up
        )
        assert (spec_low >= box_low - 1e-5).all()  # elision is at least as tight as the box


@pytest.mark.parametrize("name", ["cnn_small", "mlp", "maxpool_overlapping"])
def test_crown_is_strictly_tighter_than_ibp_at_small_eps(name):
    model = _model(name)
    x = torch.rand(8, *SHAPE)
    with torch.no_grad():
        ibp_low, ibp_up = interval_bounds(model, x, 0.02)
        full_low, full_up = crown_bounds(model, x, 0.02)
        mixed_low, mixed_up = crown_ibp_bounds(model, x, 0.02)
    ibp_width = (ibp_up - ibp_low).mean()
    assert (full_up - full_low).mean() < 0.8 * ibp_width
    assert (mixed_up - mixed_low).mean() < 0.9 * ibp_width
    assert (full_up - full_low).mean() <= (mixed_up - mixed_low).mean() + 1e-6


def test_linear_network_bounds_are_the_exact_box_bounds_of_the_affine_map():
    torch.manual_seed(5)
    model = _randomise_batch_norm(nn.Sequential(
        nn.Conv2d(1, 9, 3, stride=2, padding=2), nn.BatchNorm2d(9),  # 8 → 5, matmul-fold adjoint
        nn.Conv2d(9, 4, 3, padding="same", dilation=2),  # transposed conv, cropped
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False, padding=1),  # 5 → 3
        nn.Conv2d(4, 4, 2, stride=2, groups=2),  # 3 → 1, transposed conv with output padding
        nn.AdaptiveAvgPool2d((3, 1)),
        nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.Linear(6, CLASSES),
    )).double()  # fmt: skip
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    eps = 0.1
    with torch.no_grad():
        offset = model(torch.zeros(1, *SHAPE, dtype=torch.float64))[0]
    matrix = torch.autograd.functional.jacobian(lambda z: model(z.view(1, *SHAPE))[0], x[0])
    matrix = matrix.reshape(CLASSES, -1)
    low, up = (x - eps).clamp(0, 1).flatten(1), (x + eps).clamp(0, 1).flatten(1)
    centre = (up + low) / 2 @ matrix.T + offset
    radius = (up - low) / 2 @ matrix.abs().T
    for intermediate in ("crown", "ibp"):
        with torch.no_grad():
            lower, upper = crown_bounds(model, x, eps, intermediate=intermediate)
        torch.testing.assert_close(lower, centre - radius, rtol=0, atol=1e-10)
        torch.testing.assert_close(upper, centre + radius, rtol=0, atol=1e-10)
    ibp_low, ibp_up = interval_bounds(model, x, eps)  # IBP is looser through several layers
    assert (ibp_up - ibp_low).mean() > 1.2 * (2 * radius).mean()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_radius_gives_the_exact_output(name):
    model = _model(name)
    x, y = torch.rand(3, *SHAPE), torch.arange(3)
    with torch.no_grad():
        out = model(x)
        for intermediate in ("crown", "ibp"):
            lower, upper = crown_bounds(model, x, 0.0, intermediate=intermediate)
            torch.testing.assert_close(lower, out, rtol=0, atol=1e-5)
            torch.testing.assert_close(upper, out, rtol=0, atol=1e-5)
        spec = margin_spec(y, CLASSES)
        m_low, m_up = crown_ibp_bounds(model, x, 0.0, spec=spec)
        exact = out.gather(1, y[:, None]) - out
        torch.testing.assert_close(m_low, exact, rtol=0, atol=1e-5)
        torch.testing.assert_close(m_up, exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["cnn_small", "avgpool", "maxpool_overlapping", "batch_norm"])
def test_crown_ibp_bounds_are_differentiable_in_the_weights(name):
    model = _model(name)
    x, y = torch.rand(4, *SHAPE), torch.randint(0, CLASSES, (4,))
    lower, _ = crown_ibp_bounds(model, x, 0.05, spec=margin_spec(y, CLASSES))
    lower.sum().backward()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for layer in convs:
        assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
        assert layer.weight.grad.abs().sum() > 0
    # lower_only gives the same lower bound, with IBP's upper bound
    with torch.no_grad():
        spec = margin_spec(y, CLASSES)
        both = crown_ibp_bounds(model, x, 0.05, spec=spec)
        only = crown_ibp_bounds(model, x, 0.05, spec=spec, lower_only=True)
        torch.testing.assert_close(only[0], both[0])
        torch.testing.assert_close(only[1], interval_spec_bounds(model, x, 0.05, spec=spec)[1])


def test_margin_spec_and_worst_case_logits_bound_the_cross_entropy_in_the_ball():
    model = _model("cnn_small")
    x, y = torch.rand(6, *SHAPE), torch.randint(0, CLASSES, (6,))
    spec = margin_spec(y, CLASSES)
    assert spec.shape == (6, CLASSES, CLASSES)
    assert (spec[torch.arange(6), y] == 0).all()  # the row j = y is zero
    with torch.no_grad():
        lower, _ = crown_bounds(model, x, 0.05, spec=spec)
        worst = worst_case_from_margins(lower)
        assert (worst.gather(1, y[:, None]) == 0).all()
        robust = F.cross_entropy(worst, y, reduction="none")
        for z in _ball_samples(x, 0.05, 20).view(-1, *x.shape):
            assert (F.cross_entropy(model(z), y, reduction="none") <= robust + 1e-5).all()


def _verified_accuracy(model, x, y, eps):
    with torch.no_grad():
        lower, _ = crown_ibp_bounds(model, x, eps, spec=margin_spec(y, int(y.max()) + 1))
    others = lower.scatter(1, y[:, None], float("inf"))
    return (others.amin(1) > 0).float().mean().item()


def test_crown_ibp_training_certifies_more_than_natural_training():
    from privlab.registry import DATASETS, REGIMES
    from privlab.training.loop import TrainSpec, train

    digits = DATASETS.build("digits", seed=0)
    eps, accuracy = 0.1, {}
    for name, params in (
        ("natural", {}),
        ("crown_ibp", {"eps": eps, "kappa": 0.0, "warmup": 0.0, "ramp": 0.3}),
    ):
        torch.manual_seed(0)
        model = MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[64])
        spec = TrainSpec(epochs=20, batch_size=32, lr=3e-3)
        model = train(model, digits.members, REGIMES.build(name, **params), spec, seed=0).model
        x, y = digits.nonmembers.x, digits.nonmembers.y
        accuracy[name] = _verified_accuracy(model, x, y, eps)
    assert accuracy["crown_ibp"] > accuracy["natural"] + 0.15


def test_crown_ibp_regime_schedule():
    from privlab.registry import REGIMES

    regime = REGIMES.build("crown_ibp", eps=0.2, kappa=0.4, warmup=0.2, ramp=0.4)
    assert regime.verifier == "crown_ibp" and REGIMES.build("ibp").verifier == "ibp"
    seen = []
    for epoch in range(10):
        regime.start_epoch(epoch, 10)
        seen.append((regime._schedule["eps"], regime._schedule["kappa"], regime.beta()))
    assert seen[0] == (0.0, 1.0, 1.0) and seen[1] == (0.0, 1.0, 1.0)  # warm-up
    assert seen[4] == pytest.approx((0.1, 0.7, 0.5))  # half-way through the ramp
    assert seen[9] == pytest.approx((0.2, 0.4, 0.0))
    with pytest.raises(ValueError, match="beta_end"):
        REGIMES.build("crown_ibp", beta_end=1.5)


class _Custom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.Tanh(), "Tanh"),
        (nn.LayerNorm(4), "LayerNorm"),
        (_Custom(), "_Custom"),
        (nn.BatchNorm1d(4).train(), "BatchNorm1d in training mode"),
    ],
)
def test_unsupported_layers_are_named_with_the_supported_ones(layer, message):
    model = nn.Sequential(nn.Linear(4, 4), layer, nn.Linear(4, 2))
    for bound in (crown_bounds, crown_ibp_bounds):
        with pytest.raises(
            UnsupportedLayerError,
            match=rf"{message}.*supported layers are Linear, Conv2d, ReLU, Flatten, AvgPool2d, "
            "MaxPool2d",
        ):
            bound(model, torch.rand(2, 4), 0.1)


def test_bad_arguments_are_refused():
    model = _model("mlp")
    x = torch.rand(2, *SHAPE)
    with pytest.raises(ValueError, match="intermediate"):
        crown_bounds(model, x, 0.1, intermediate="zonotope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spec must be"):
        crown_bounds(model, x, 0.1, spec=torch.zeros(2, 3, CLASSES + 1))
    with pytest.raises(ValueError, match="non-negative"):
        crown_ibp_bounds(model, x, -0.1)
