"""Contract tests over every registered regime: trains, deterministic, reports its budget."""

import dataclasses
import math

import pytest
import torch

from privlab.registry import MODELS, REGIMES
from privlab.training.loop import TrainSpec, train
from privlab.training.regime import Regime

FAST = {
    "pgd_at": {"eps": 0.1, "steps": 2},
    "trades": {"eps": 0.1, "steps": 2},
    "dist_at": {"steps": 2},
    "dp_sgd": {"noise_multiplier": 0.3},
}
FAST_LR = {
    "dp_sgd": 0.01,  # clipped, noisy gradients need a larger step to learn in 4 epochs
    "tl_dmi": 0.01,  # the first layer is frozen: only the later ones learn the private data
}


def _fit(name, bundle, seed=0, epochs=3, hidden=(32,), train_args=None, spec_args=None, **params):
    torch.manual_seed(seed)
    model = MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=hidden
    )
    regime = REGIMES.build(name, **{**FAST.get(name, {}), **params})
    if regime.uses_public_data:  # TL-DMI pre-trains on the attacker-disjoint population
        regime = dataclasses.replace(regime, _public=bundle.population)
    if getattr(regime, "input_shape", ()) is None:  # the drop layer's mask needs the input shape
        regime = dataclasses.replace(regime, input_shape=bundle.input_shape)
    spec = TrainSpec(epochs=epochs, batch_size=32, lr=FAST_LR.get(name, 1e-3), **(spec_args or {}))
    return train(model, bundle.members, regime, spec, seed=seed, **(train_args or {}))


MEMORISE_ONLY = {"permuted_labels"}  # trains on permuted labels: held-out accuracy is chance


@pytest.mark.parametrize("name", REGIMES.names())
def test_regime_trains_a_plain_module_that_learns(name, tiny):
    result = _fit(name, tiny, epochs=4)
    assert isinstance(result.model, torch.nn.Sequential)  # unwrapped (no Opacus wrapper)
    assert not result.model.training
    assert len(result.history) == 4 and all(math.isfinite(h["loss"]) for h in result.history)
    if name in MEMORISE_ONLY:
        return  # learns nothing that generalises, by design (tested on its own)
    with torch.no_grad():
        acc = (result.model(tiny.nonmembers.x).argmax(1) == tiny.nonmembers.y).float().mean()
    assert acc > 1.5 / tiny.num_classes  # better than chance on held-out data


@pytest.mark.parametrize("name", REGIMES.names())
def test_regime_is_deterministic_under_a_seed(name, tiny):
    a, b = _fit(name, tiny, seed=3), _fit(name, tiny, seed=3)
    for (ka, va), (kb, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("name", [n for n in REGIMES.names() if REGIMES.get(n).resumable])
def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_weights(
    name, tiny, tmp_path
):
    from privlab.run.store import FileCheckpoint

    cosine = {"schedule": "cosine"}  # the schedule's state is part of what resumes
    whole = _fit(name, tiny, seed=5, spec_args=cosine)
    ckpt = FileCheckpoint(tmp_path / "ckpt.safetensors", {"regime": name})

    def dies_after_epoch_2(done, total, loss):
        if done == 2:
            raise _Interrupted  # before the loop saves epoch 2: the checkpoint holds epoch 1

    with pytest.raises(_Interrupted):
        _fit(
            name,
            tiny,
            seed=5,
            spec_args=cosine,
            train_args={"checkpoint": ckpt, "on_epoch": dies_after_epoch_2},
        )
    assert ckpt.load()["epoch"] == 1
    torch.manual_seed(123)  # the resumed run does not depend on the RNG it starts with
    resumed = _fit(name, tiny, seed=5, spec_args=cosine, train_args={"checkpoint": ckpt})
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    for (ka, va), (kb, vb) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb), ka


def test_a_regime_with_state_of_its_own_trains_from_scratch_past_a_checkpoint(tiny, tmp_path):
    from privlab.run.store import FileCheckpoint

    ckpt = FileCheckpoint(tmp_path / "ckpt.safetensors", {"regime": "dp_sgd"})
    _fit("dp_sgd", tiny, train_args={"checkpoint": ckpt})
    assert ckpt.load() is None  # nothing saved: DP-SGD's accountant is not in a checkpoint


@pytest.mark.parametrize("name", REGIMES.names())
def test_regime_declares_budget_and_plain_params(name):
    regime: Regime = REGIMES.build(name, **FAST.get(name, {}))
    eps, norm = regime.budget()
    assert norm in ("linf", "l2")
    assert eps is None or eps > 0
    assert all(not k.startswith("_") for k in regime.params())
    assert regime.name == name


def test_robust_regimes_declare_their_eps():
    assert REGIMES.build("pgd_at", eps=0.3).budget() == (0.3, "linf")
    assert REGIMES.build("pgd_at", eps=0.5, norm="l2").budget() == (0.5, "l2")
    assert REGIMES.build("natural").budget()[0] is None


def test_pgd_at_makes_the_model_more_robust_than_natural():
    from privlab.metrics.utility import adversarial_accuracy
    from privlab.registry import DATASETS

    digits = DATASETS.build("digits", seed=0)
    nat = _fit("natural", digits, epochs=10, hidden=(256, 256))
    rob = _fit("pgd_at", digits, epochs=10, hidden=(256, 256), eps=0.1, steps=3)
    adv = {
        n: adversarial_accuracy(
            r.model, digits.nonmembers.x, digits.nonmembers.y, eps=0.1, steps=10
        )
        for n, r in (("nat", nat), ("rob", rob))
    }
    assert adv["rob"] > adv["nat"] + 0.1


def test_adv_ratio_zero_equals_natural_training(tiny):
    a = _fit("natural", tiny, seed=1)
    b = _fit("pgd_at", tiny, seed=1, adv_ratio=0.0)
    assert all(
        torch.allclose(u, v)
        for u, v in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )


def test_label_smoothing_targets():
    from privlab.training.regimes.label_smoothing import smoothed_cross_entropy

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    logp = logits.log_softmax(1)[0]
    for alpha in (0.3, -0.2):
        q = torch.tensor([1 - alpha + alpha / 3, alpha / 3, alpha / 3])
        assert torch.isclose(smoothed_cross_entropy(logits, y, alpha), -(q * logp).sum())
    with pytest.raises(ValueError, match="alpha"):
        REGIMES.build("label_smoothing", alpha=1.5)


def test_da_regulariser_penalises_distribution_gaps():
    from privlab.training.regimes.pgd_at import _gaussian_gap

    a = torch.randn(64, 5)
    assert _gaussian_gap(a, a) == 0
    assert _gaussian_gap(a, a + 1.0) > _gaussian_gap(a, a + 0.1) > 0


def test_loop_rejects_bad_settings(tiny):
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[8])
    with pytest.raises(ValueError, match="epochs"):
        train(model, tiny.members, REGIMES.build("natural"), TrainSpec(epochs=0))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(
            model,
            tiny.members,
            REGIMES.build("natural"),
            TrainSpec(epochs=2, optimizer="sgd", lr=1e30),
        )


def test_dist_at_penalty_limits_how_far_examples_move(tiny):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[32]).eval()
    x, y = tiny.members.x[:64], tiny.members.y[:64]
    dist = {}
    for gamma in (0.01, 1.0, 100.0):
        regime = REGIMES.build("dist_at", gamma=gamma, steps=10, step_size=0.02)
        dist[gamma] = (regime.perturb(model, x, y) - x).flatten(1).abs().amax(1).mean()
    assert dist[0.01] > dist[1.0] > dist[100.0]


def test_trades_robust_term_vanishes_without_perturbation(tiny):
    torch.manual_seed(0)
    model = MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[16])
    x, y = tiny.members.x[:32], tiny.members.y[:32]
    plain = torch.nn.functional.cross_entropy(model(x), y)
    no_ball = REGIMES.build("trades", eps=0.0, beta=6.0).loss(model, x, y)
    assert torch.isclose(no_ball, plain, atol=1e-6)  # a zero ball leaves x, so KL = 0
    assert REGIMES.build("trades", eps=0.2, beta=6.0).loss(model, x, y) > plain
