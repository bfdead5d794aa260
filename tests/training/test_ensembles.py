"""Vectorised model ensembles (privlab.training.ensembles) against the one training loop.

The ensemble draws every model's batches, PGD starts and DP noise from the streams the loop
uses for the same seed, so besides "same distribution" most checks here are step for step:
the ensemble's parameters equal sequential ``train``'s up to float rounding.
"""

import numpy as np
import pytest
import torch
from torch import nn

from privlab.metrics.utility import accuracy, adversarial_accuracy
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training.ensembles import can_vectorise, dp_noisy_gradients, train_ensemble
from privlab.training.loop import TrainSpec, train

SEEDS = [3, 1, 4, 1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from 2 threads, and 1 cannot spin against a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(
        threads
    )  # a repeated seed is allowed: model 3 then equals model 1 on its own mask


def _mlp_factory(bundle, hidden=(16,)):
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return MODELS.build(
            "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=hidden
        )

    return make


def _unequal_masks(n: int) -> np.ndarray:
    """Subsets of very different sizes, one smaller than the batch size."""
    rng = np.random.default_rng(0)
    masks = rng.random((4, n)) < np.array([0.9, 0.5, 0.25, 0.0])[:, None]
    masks[3, rng.choice(n, 7, replace=False)] = True
    return masks


def _sequential(make, data, masks, regime, spec, seeds):
    return [
        train(make(s), data.subset(np.flatnonzero(m)), regime, spec, seed=s)
        for m, s in zip(masks, seeds, strict=True)
    ]


def _max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max(
        float((p - q).detach().abs().max())
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _assert_same_training(ens, seq, tol=1e-5):
    for e, s in zip(ens, seq, strict=True):
        assert _max_param_diff(e.model, s.model) <= tol
        assert [h["loss"] for h in e.history] == pytest.approx(
            [h["loss"] for h in s.history], abs=1e-5
        )
        assert not e.model.training


@pytest.mark.parametrize(
    "spec",
    [
        TrainSpec(epochs=4, batch_size=1000, optimizer="sgd", lr=0.5, momentum=0.0),
        TrainSpec(epochs=4, batch_size=1000, optimizer="adam", lr=1e-2),
        TrainSpec(
            epochs=3,
            batch_size=16,
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-3,
            schedule="cosine",
        ),
        TrainSpec(epochs=3, batch_size=16, optimizer="adam", lr=1e-2, weight_decay=1e-3),
    ],
    ids=["sgd-full-batch", "adam-full-batch", "sgd-momentum-cosine", "adam-minibatch"],
)
def test_natural_ensemble_equals_sequential_training(tiny, spec):
    """Full batch (no shuffling) proves the optimiser and masking; minibatch runs also prove
    the batch order, the last partial batch and frozen models (unequal subset sizes)."""
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))
    regime = REGIMES.build("natural")
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS)
    _assert_same_training(ens, _sequential(make, tiny.members, masks, regime, spec, SEEDS))


@pytest.mark.parametrize(
    "regime",
    [
        REGIMES.build("label_smoothing", alpha=-0.2),
        REGIMES.build("pgd_at", eps=0.1, steps=2, adv_ratio=0.5, adv_subset="batch"),
        REGIMES.build("pgd_at", eps=0.5, steps=2, norm="l2"),
    ],
    ids=["label_smoothing", "pgd_linf_ratio", "pgd_l2"],
)
def test_other_vectorised_regimes_equal_sequential_training(tiny, regime):
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))
    spec = TrainSpec(epochs=2, batch_size=16, lr=1e-2)
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS)
    _assert_same_training(ens, _sequential(make, tiny.members, masks, regime, spec, SEEDS))


@pytest.mark.parametrize(
    "regime",
    [REGIMES.build("natural"), REGIMES.build("pgd_at", eps=0.1, steps=2)],
    ids=["natural", "pgd_at"],
)
def test_cnn_ensemble_equals_sequential_training(tiny, regime):
    """Stacked convolutions run as one grouped convolution (channels-last input)."""

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return MODELS.build(
            "cnn_small", input_shape=tiny.input_shape, num_classes=4, channels=(4, 8), fc=16
        )

    masks = _unequal_masks(len(tiny.members))
    spec = TrainSpec(epochs=2, batch_size=32, lr=1e-2)
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS)
    _assert_same_training(ens, _sequential(make, tiny.members, masks, regime, spec, SEEDS))


def test_members_match_sequential_models_in_distribution(tiny):
    """Different seeds on each side: only the distribution can agree."""
    make = _mlp_factory(tiny, hidden=(32,))
    masks = np.ones((4, len(tiny.members)), bool)
    spec = TrainSpec(epochs=8, batch_size=32, lr=1e-2)
    regime = REGIMES.build("natural")
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=[0, 1, 2, 3])
    seq = _sequential(make, tiny.members, masks, regime, spec, [10, 11, 12, 13])
    test = tiny.nonmembers
    acc_e = [accuracy(r.model, test.x, test.y) for r in ens]
    acc_s = [accuracy(r.model, test.x, test.y) for r in seq]
    assert abs(np.mean(acc_e) - np.mean(acc_s)) < 0.08
    loss_e = [r.history[-1]["loss"] for r in ens]
    loss_s = [r.history[-1]["loss"] for r in seq]
    assert abs(np.mean(loss_e) - np.mean(loss_s)) < 0.1
    assert len({round(a, 6) for a in loss_e}) == 4  # the seeds gave four different models


def test_models_only_ever_see_their_own_members():
    data = DATASETS.build("synthetic", n=120, num_classes=4, noise=0.7, seed=0, members=0.5)
    pool = data.members
    n = len(pool)
    masks = np.zeros((2, n), bool)
    masks[0, : n // 3] = True
    masks[1, n // 3 : 2 * n // 3] = True
    # rows in no mask are NaN: reading one (even as weight-0 padding) would poison the loss
    x = pool.x.clone()
    x[2 * n // 3 :] = float("nan")
    pool = type(pool)(x, pool.y)
    make = _mlp_factory(data, hidden=(64,))
    spec = TrainSpec(epochs=60, batch_size=n, lr=1e-2)
    results = train_ensemble(make, pool, masks, REGIMES.build("natural"), spec, seeds=[0, 1])
    losses = np.zeros((2, 2))
    for k, r in enumerate(results):
        with torch.no_grad():
            for j in range(2):
                idx = torch.from_numpy(np.flatnonzero(masks[j]))
                losses[k, j] = float(nn.functional.cross_entropy(r.model(pool.x[idx]), pool.y[idx]))
    assert np.isfinite(losses).all()
    for k in range(2):  # memorised its own members, not the other model's
        assert losses[k, k] < 0.05
        assert losses[k, 1 - k] > 10 * losses[k, k] + 0.3


def test_chunking_does_not_change_any_model(tiny):
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))
    spec = TrainSpec(epochs=2, batch_size=16, lr=1e-2)
    regime = REGIMES.build("natural")
    calls = []
    whole = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS)
    chunked = train_ensemble(
        make,
        tiny.members,
        masks,
        regime,
        spec,
        seeds=SEEDS,
        chunk_size=3,
        on_epoch=lambda *a: calls.append(a),
    )
    for a, b in zip(whole, chunked, strict=True):
        assert _max_param_diff(a.model, b.model) < 1e-5
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)] * 2  # two chunks
    assert _max_param_diff(whole[1].model, whole[3].model) > 1e-3  # same seed, other mask


@pytest.mark.parametrize("regime_name", ["natural", "dp_sgd"])
def test_parallel_workers_do_not_change_any_model(tiny, regime_name):
    """Two groups in two threads (one torch thread each) train exactly the same models."""
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))
    spec = TrainSpec(epochs=2, batch_size=16, lr=1e-2)
    regime = REGIMES.build(regime_name)
    calls = []
    one = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS, workers=1)
    two = train_ensemble(
        make,
        tiny.members,
        masks,
        regime,
        spec,
        seeds=SEEDS,
        workers=2,
        on_epoch=lambda *a: calls.append(a),
    )
    for a, b in zip(one, two, strict=True):
        assert _max_param_diff(a.model, b.model) < 1e-5
        assert a.summary == b.summary
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)]  # the first group reports
    assert torch.get_num_threads() == 1  # restored (this module runs single-threaded)


def test_dp_sgd_ensemble_equals_opacus_and_reports_its_epsilon(tiny):
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))
    regime = REGIMES.build("dp_sgd", noise_multiplier=1.1, max_grad_norm=0.5, delta=1e-3)
    spec = TrainSpec(epochs=2, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9)
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS)
    seq = _sequential(make, tiny.members, masks, regime, spec, SEEDS)
    _assert_same_training(ens, seq)  # same Poisson batches, clipping and noise as Opacus
    for e, s in zip(ens, seq, strict=True):
        assert e.summary.keys() == s.summary.keys()
        assert e.summary["epsilon"] == pytest.approx(s.summary["epsilon"], rel=1e-6)
        for key in ("delta", "noise_multiplier", "sample_rate", "steps", "accountant"):
            assert e.summary[key] == s.summary[key]
    assert len({e.summary["epsilon"] for e in ens}) == 4  # per-model q and steps


def test_dp_sgd_target_epsilon_per_model(tiny):
    make = _mlp_factory(tiny)
    masks = _unequal_masks(len(tiny.members))[:2]
    regime = REGIMES.build(
        "dp_sgd", noise_multiplier=None, target_epsilon=2.0, accountant="prv", delta=1e-3
    )
    spec = TrainSpec(epochs=2, batch_size=16)
    ens = train_ensemble(make, tiny.members, masks, regime, spec, seeds=SEEDS[:2])
    seq = _sequential(make, tiny.members, masks, regime, spec, SEEDS[:2])
    for e, s in zip(ens, seq, strict=True):
        assert e.summary["noise_multiplier"] == s.summary["noise_multiplier"]
        assert e.summary["epsilon"] == pytest.approx(s.summary["epsilon"], rel=1e-6)
        assert e.summary["epsilon"] <= 2.0 + 1e-2


def test_dp_clipping_and_noise_against_a_loop_over_samples():
    gen = torch.Generator().manual_seed(0)
    k_count, b = 3, 5
    grads = {
        "w": torch.randn(k_count, b, 4, 3, generator=gen) * 2,
        "b": torch.randn(k_count, b, 4, generator=gen),
    }
    weight = torch.ones(k_count, b)
    weight[1, 3:] = 0  # padding
    weight[2, :] = 0  # a model without a batch
    expected = torch.tensor([5, 3, 4])
    c = 1.5
    out = dp_noisy_gradients(grads, weight, max_grad_norm=c, expected_batch_size=expected)
    for k in range(k_count):
        total = {n: torch.zeros_like(g[k, 0]) for n, g in grads.items()}
        for i in range(b):
            if weight[k, i] == 0:
                continue
            norm = torch.sqrt(sum((g[k, i] ** 2).sum() for g in grads.values()))
            factor = min(1.0, c / (float(norm) + 1e-6))
            for n, g in grads.items():
                total[n] += factor * g[k, i]
        for n in grads:
            torch.testing.assert_close(out[n][k], total[n] / float(expected[k]))
    # noise: std σC per model, none for a model given no generator
    big = {"w": torch.zeros(2, 1, 20000)}
    gens = [torch.Generator().manual_seed(1), None]
    noisy = dp_noisy_gradients(
        big,
        torch.ones(2, 1),
        max_grad_norm=c,
        expected_batch_size=torch.tensor([1, 1]),
        noise_std=2.0,
        generators=gens,
    )["w"]
    assert float(noisy[0].std()) == pytest.approx(2.0, rel=0.03)
    assert float(noisy[1].abs().max()) == 0.0


def test_pgd_ensemble_members_are_robust():
    data = DATASETS.build("synthetic", n=360, num_classes=4, noise=0.4, seed=0)
    make = _mlp_factory(data, hidden=(64,))
    masks = np.ones((2, len(data.members)), bool)
    spec = TrainSpec(epochs=25, batch_size=32, lr=1e-2)
    eps = 0.15
    nat = train_ensemble(make, data.members, masks, REGIMES.build("natural"), spec, seeds=[0, 1])
    regime = REGIMES.build("pgd_at", eps=eps, steps=3)
    rob = train_ensemble(make, data.members, masks, regime, spec, seeds=[0, 1])
    x, y = data.members.x, data.members.y
    for r_nat, r_rob in zip(nat, rob, strict=True):
        adv_nat = adversarial_accuracy(r_nat.model, x, y, eps=eps, steps=10)
        adv_rob = adversarial_accuracy(r_rob.model, x, y, eps=eps, steps=10)
        assert adv_rob > adv_nat + 0.1


def test_unvectorisable_models_and_regimes_fall_back_to_sequential_training(tiny):
    def make_bn(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)
        )

    masks = _unequal_masks(len(tiny.members))[:2]
    spec = TrainSpec(epochs=1, batch_size=32)
    assert "BatchNorm1d" in (can_vectorise(make_bn(0), REGIMES.build("natural")) or "")
    with pytest.warns(RuntimeWarning, match="sequential"):
        bn = train_ensemble(
            make_bn, tiny.members, masks, REGIMES.build("natural"), spec, seeds=[0, 1]
        )
    seq = _sequential(make_bn, tiny.members, masks, REGIMES.build("natural"), spec, [0, 1])
    _assert_same_training(bn, seq, tol=0.0)  # exactly the loop
    trades = REGIMES.build("trades", eps=0.1, steps=1)
    assert "trades" in (can_vectorise(_mlp_factory(tiny)(0), trades) or "")
    with pytest.warns(RuntimeWarning, match="sequential"):
        results = train_ensemble(
            _mlp_factory(tiny), tiny.members, masks, trades, spec, seeds=[0, 1]
        )
    assert len(results) == 2 and all(not r.model.training for r in results)
    assert can_vectorise(_mlp_factory(tiny)(0), REGIMES.build("pgd_at", da_weight=1.0))
    dropout = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 4))
    assert "Dropout" in (can_vectorise(dropout, REGIMES.build("natural")) or "")
    assert can_vectorise(_mlp_factory(tiny)(0), REGIMES.build("dp_sgd")) is None


def test_bad_input_is_refused_with_a_clear_error(tiny):
    make = _mlp_factory(tiny)
    n = len(tiny.members)
    regime, spec = REGIMES.build("natural"), TrainSpec(epochs=1)
    ok = np.ones((2, n), bool)
    cases = [
        (np.ones((2, n - 1), bool), [0, 1], "shape"),
        (np.ones(n, bool), [0], "shape"),
        (np.ones((2, n), int), [0, 1], "bool"),
        (ok, [0, 1, 2], "seeds"),
        (np.vstack([ok[:1], np.zeros((1, n), bool)]), [0, 1], "no examples"),
    ]
    for masks, seeds, message in cases:
        with pytest.raises(ValueError, match=message):
            train_ensemble(make, tiny.members, masks, regime, spec, seeds=seeds)
    with pytest.raises(ValueError, match="chunk_size"):
        train_ensemble(make, tiny.members, ok, regime, spec, seeds=[0, 1], chunk_size=0)
