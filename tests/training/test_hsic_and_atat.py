"""Normalised HSIC against an independent numpy computation, and the AT-AT regime."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from privlab.metrics.hsic import kernel_matrix, normalized_hsic
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training.loop import TrainSpec, train
from privlab.training.perturbations import pgd
from privlab.training.regimes.atat import random_other_labels


def _numpy_nhsic(a, b, sigma=5.0, eps=1e-5, kernel_b="gaussian"):
    """BiDO's hsic_normalized_cca written out with numpy, loop-free but independent."""

    def gram(x, kind):
        x = x.reshape(len(x), -1).astype(np.float64)
        if kind == "linear":
            return x @ x.T
        d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        return np.exp(-d / (2 * sigma**2 * x.shape[1]))

    def r(k):
        m = len(k)
        kc = k @ (np.eye(m) - np.ones((m, m)) / m)
        return kc @ np.linalg.inv(kc + eps * m * np.eye(m))

    return float(np.trace(r(gram(a, "gaussian")) @ r(gram(b, kernel_b))))


def test_normalized_hsic_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    x, z = rng.random((40, 12)), rng.random((40, 5))
    y = np.eye(4)[rng.integers(0, 4, 40)]
    assert normalized_hsic(torch.tensor(x), torch.tensor(z)) == pytest.approx(
        _numpy_nhsic(x, z), rel=1e-6
    )
    assert normalized_hsic(torch.tensor(y), torch.tensor(z), kernel_a="linear") == pytest.approx(
        _numpy_nhsic(z, y, kernel_b="linear"), rel=1e-6
    )  # tr(AB) = tr(BA)


def test_gaussian_kernel_and_its_gradient_match_the_pairwise_differences():
    torch.manual_seed(0)
    a = torch.rand(16, 30, dtype=torch.float64, requires_grad=True)
    direct = torch.exp(-(a[:, None] - a[None]).pow(2).sum(-1) / (2 * 25.0 * 30))
    k = kernel_matrix(a)
    assert torch.allclose(k, direct, atol=1e-12) and torch.equal(
        k.diagonal(), torch.ones(16).double()
    )
    w = torch.rand(16, 16, dtype=torch.float64)  # any downstream use
    (g_k,) = torch.autograd.grad((k * w).sum(), a)
    (g_direct,) = torch.autograd.grad((direct * w).sum(), a)
    assert torch.allclose(g_k, g_direct, atol=1e-12)


def test_normalized_hsic_sees_dependence_not_independence():
    torch.manual_seed(0)
    x = torch.rand(64, 10)
    dependent = normalized_hsic(x, torch.tanh(x @ torch.randn(10, 6)))
    independent = normalized_hsic(x, torch.rand(64, 6))
    assert dependent > 2 * independent


def test_median_heuristic_and_bad_input():
    a = torch.rand(10, 3)
    k = kernel_matrix(a, sigma=None)
    assert torch.allclose(k.diagonal(), torch.ones(10, dtype=torch.float64))
    assert torch.allclose(k, k.T)
    with pytest.raises(ValueError, match="rows"):
        normalized_hsic(torch.rand(5, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(a, "cosine")  # type: ignore[arg-type]


def test_random_other_labels_are_uniform_over_the_other_classes():
    torch.manual_seed(0)
    y = torch.randint(0, 5, (20_000,))
    t = random_other_labels(y, 5)
    assert not (t == y).any()
    counts = torch.bincount((t - y) % 5, minlength=5)[1:].double()
    assert counts.min() / counts.max() > 0.4  # every other class is drawn (t+1 skews it)


def test_atat_loss_is_the_replication_codes():
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8])
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
    regime = REGIMES.build("atat", eps=0.0, steps=0)
    torch.manual_seed(7)
    loss = regime.loss(model, x, y)
    torch.manual_seed(7)
    t = random_other_labels(y, 3)
    logits = model(x)
    expected = F.cross_entropy(logits, y, reduction="sum") + 0.08 * F.cross_entropy(
        logits, t, reduction="sum"
    )
    assert torch.isclose(loss, expected)
    assert regime.budget() == (None, "linf")  # not a robustness defence


def test_atat_learns_non_robust_features():
    """AT-AT makes small targeted perturbations far more effective than on a natural model,
    at no cost in accuracy (the paper's non-robust-feature mechanism)."""
    bundle = DATASETS.build("digits", seed=0)
    x, y = bundle.nonmembers.x, bundle.nonmembers.y
    results = {}
    for name, params in (("natural", {}), ("atat", {"eps": 0.1})):
        torch.manual_seed(0)
        model = MODELS.build("mlp", input_shape=bundle.input_shape, num_classes=10, hidden=[128])
        spec = TrainSpec(epochs=40, batch_size=64)
        model = train(model, bundle.members, REGIMES.build(name, **params), spec, seed=0).model
        torch.manual_seed(1)
        t = random_other_labels(y, 10)
        x_adv = pgd(model, x, t, eps=0.1, steps=5, step_size=0.02, targeted=True)
        with torch.no_grad():
            results[name] = (
                float((model(x).argmax(1) == y).float().mean()),
                float((model(x_adv).argmax(1) == t).float().mean()),
            )
    assert results["atat"][1] > results["natural"][1] + 0.15
    assert results["atat"][0] >= results["natural"][0] - 0.02


def test_layer_hsic_reports_every_hidden_layer_and_bido_lowers_input_dependence(tiny):
    from privlab.metrics.hsic import layer_hsic

    x, y = tiny.members.x, tiny.members.y
    measured = {}
    for name in ("natural", "bido"):
        torch.manual_seed(0)
        model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[32, 32])
        params = {"a1": 0.5, "a2": 0.05} if name == "bido" else {}
        spec = TrainSpec(epochs=15, batch_size=60, lr=3e-3)
        model = train(model, tiny.members, REGIMES.build(name, **params), spec, seed=0).model
        rows = layer_hsic(model, x, y, num_classes=4, batch_size=60)
        assert [r["layer"] for r in rows] == [0, 1]  # one row per ReLU
        measured[name] = rows
    # a strong a1 penalty lowers nHSIC(X, Z) on the last hidden layer
    assert measured["bido"][-1]["hsic_xz"] < measured["natural"][-1]["hsic_xz"]
    with pytest.raises(ValueError, match="full batch"):
        layer_hsic(model, x[:10], y[:10], num_classes=4, batch_size=60)


def test_neg_ls_schedule_is_the_replication_codes():
    from privlab.training.regimes.neg_ls import neg_ls_alpha

    alphas = [neg_ls_alpha(-0.05, e, 100, 0.5, 0.75) for e in range(1, 101)]
    assert alphas[:49] == [0.0] * 49  # e < 50
    assert alphas[49] == pytest.approx(-0.05 * 1 / 50)  # e = 50: α·(e + 1 − 50)/(E − 50)
    assert alphas[73] == pytest.approx(-0.05 * 25 / 50)  # e = 74
    assert alphas[74:] == [-0.05] * 26  # e ≥ 75
    regime = REGIMES.build("neg_ls")
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=(1, 4, 4), num_classes=3, hidden=[8])
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
    regime.start_epoch(0, 100)
    assert torch.isclose(regime.loss(model, x, y), F.cross_entropy(model(x), y))
    regime.start_epoch(99, 100)
    log_p = F.log_softmax(model(x), dim=1)
    expected = (1.05 * -log_p[torch.arange(6), y] + (-0.05) * -log_p.mean(dim=1)).mean()
    assert torch.isclose(regime.loss(model, x, y), expected)
    with pytest.raises(ValueError, match="start"):
        REGIMES.build("neg_ls", start=0.8, full=0.5)


def test_permuted_labels_memorise_without_generalising(tiny):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[256])
    spec = TrainSpec(epochs=60, batch_size=16, lr=3e-3)
    model = train(model, tiny.members, REGIMES.build("permuted_labels"), spec, seed=0).model
    gen = torch.Generator().manual_seed(0)
    permuted = tiny.members.y[torch.randperm(len(tiny.members), generator=gen)]
    with torch.no_grad():
        fit = (model(tiny.members.x).argmax(1) == permuted).float().mean()
        test = (model(tiny.nonmembers.x).argmax(1) == tiny.nonmembers.y).float().mean()
    assert fit > 0.9  # the permuted labels are memorised
    assert abs(float(test) - 0.25) < 0.12  # held-out accuracy stays at chance (4 classes)
