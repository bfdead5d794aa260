"""Model-inversion attacks: they recover classes of a leaky model, fail against a model that
learned nothing about its classes, and refuse bad input with clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from privlab.attacks.inversion.losses import poincare_loss, total_variation
from privlab.data.bundle import DataBundle, Split
from privlab.metrics.inversion import evaluator_outputs, inversion_metrics, nearest_private
from privlab.models.vae import VAE, train_vae
from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo
from privlab.training.loop import TrainSpec, train

FAST = {
    "ppa": {"search": 400, "candidates": 8, "steps": 40, "selection_transforms": 10},
    "gmi": {"candidates": 8, "steps": 60},
    "mi_face": {"steps": 120, "restarts": 6},
}


# Acc@1 each attack reaches on the leaky model (GMI: no search, no crops, the weakest)
STRENGTH = {"ppa": 0.6, "gmi": 0.3, "mi_face": 0.6}


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return DATASETS.build("digits", seed=0)


def _model(
    bundle: DataBundle, regime: str, name: str = "mlp", seed: int = 0, **kw
) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = MODELS.build(name, input_shape=bundle.input_shape, num_classes=bundle.num_classes, **kw)
    spec = TrainSpec(epochs=25, batch_size=64)
    return train(model, bundle.members, REGIMES.build(regime), spec, seed=seed).model


@pytest.fixture(scope="module")
def world(digits):
    """A prior on the population, an evaluator (CNN), a leaky natural MLP and a permuted one."""
    prior = VAE(digits.input_shape, latent=8, hidden=200)
    train_vae(prior, digits.population.x, epochs=40, seed=0)
    evaluator = _model(digits, "natural", "cnn_small", seed=5)
    info = TargetInfo("t", digits.num_classes, digits.input_shape)
    natural = Target(_model(digits, "natural", hidden=(128, 128)), info, Access.all())
    permuted = Target(_model(digits, "permuted_labels", hidden=(128, 128)), info, Access.all())
    return prior, evaluator, natural, permuted


def _attack(world, digits, name, which):
    prior, evaluator, natural, permuted = world
    target = natural if which == "natural" else permuted
    recon = ATTACKS.build(name, per_class=3, **FAST[name]).invert(target, prior=prior, seed=0)
    return recon, inversion_metrics(
        evaluator, recon.images, recon.labels, digits.members, num_classes=digits.num_classes
    )


INVERSION = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "inversion"]


def test_every_inversion_attack_has_fast_settings_and_a_strength():
    assert sorted(FAST) == sorted(STRENGTH) == INVERSION


@pytest.mark.parametrize("name", INVERSION)
def test_attack_recovers_classes_of_a_leaky_model_and_fails_on_permuted_labels(world, digits, name):
    recon, leaky = _attack(world, digits, name, "natural")
    assert recon.images.shape == (30, *digits.input_shape)
    assert recon.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert float(recon.images.min()) >= 0 and float(recon.images.max()) <= 1
    assert leaky["acc1"] >= STRENGTH[name]  # chance is 0.1
    _, defended = _attack(world, digits, name, "permuted")
    assert defended["acc1"] <= 0.35  # the model holds no class features to recover
    assert defended["knn_dist"] > leaky["knn_dist"]


def test_attacks_are_seeded(world):
    prior, _, natural, _ = world
    attack = ATTACKS.build("ppa", per_class=2, **FAST["ppa"])
    a = attack.invert(natural, [1, 7], prior=prior, seed=3)
    b = attack.invert(natural, [1, 7], prior=prior, seed=3)
    assert torch.equal(a.images, b.images)
    c = attack.invert(natural, [1, 7], prior=prior, seed=4)
    assert not torch.equal(a.images, c.images)


def test_poincare_loss_matches_the_hyperbolic_distance():
    logits = torch.tensor([[3.0, -1.0, 0.5], [0.2, 0.1, -4.0]], dtype=torch.float64)
    target = torch.tensor([0, 2])
    got = poincare_loss(logits, target)
    for i in range(2):
        u = [v / sum(abs(w) for w in logits[i].tolist()) for v in logits[i].tolist()]
        e = [max(0.0, min(1.0, (1.0 if j == target[i] else 0.0) - 1e-4)) for j in range(3)]
        num = sum((a - b) ** 2 for a, b in zip(u, e, strict=True))
        den = (1 - sum(a * a for a in u)) * (1 - sum(b * b for b in e))
        delta = 2 * num / den
        expected = math.log(1 + delta + math.sqrt((1 + delta) ** 2 - 1))
        assert got[i].item() == pytest.approx(expected, rel=1e-5)
    # closer to the one-hot point → smaller loss
    assert poincare_loss(torch.tensor([[9.0, 0.1, 0.1]]), torch.tensor([0])) < got[0]


def test_total_variation_is_zero_on_flat_images():
    flat = torch.full((2, 1, 5, 5), 0.3)
    assert torch.equal(total_variation(flat), torch.zeros(2))
    edge = flat.clone()
    edge[..., 2:] = 0.8
    assert total_variation(edge)[0].item() == pytest.approx(5 * 0.5)


def test_metrics_match_a_brute_force_computation(world, digits):
    _, evaluator, _, _ = world
    images, labels = digits.nonmembers.x[:40], digits.nonmembers.y[:40]
    m = inversion_metrics(evaluator, images, labels, digits.members, num_classes=10)
    logits, feats = evaluator_outputs(evaluator, images)
    _, priv = evaluator_outputs(evaluator, digits.members.x)
    expected = []
    for f, c in zip(feats, labels, strict=True):
        pool = priv[digits.members.y == c]
        expected.append(min(float(((f - p) ** 2).sum()) for p in pool))
    assert m["knn_dist"] == pytest.approx(sum(expected) / len(expected), rel=1e-4)
    assert m["acc1"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert m["acc5"] >= m["acc1"]
    # a private image reconstructs itself: distance 0, its own index
    dist, idx = nearest_private(priv[:5], digits.members.y[:5], priv, digits.members.y)
    assert torch.allclose(dist, torch.zeros(5), atol=1e-3) and idx.tolist() == list(range(5))


def test_vae_prior_learns_the_public_images(digits):
    vae = VAE(digits.input_shape, latent=4, hidden=64)
    x = digits.population.x
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(vae.loss(x))
    history = train_vae(vae, x, epochs=15, seed=0)
    with torch.no_grad():
        after = float(vae.loss(x))
    assert history[-1] < history[0] and after < 0.8 * before
    with torch.no_grad():
        out = vae.decode(vae.sample_latents(16, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (16, *digits.input_shape) and 0 <= float(out.min()) <= float(out.max()) <= 1


def test_unknown_class_names_the_valid_ones(world):
    prior, _, natural, _ = world
    with pytest.raises(ValueError, match=r"unknown class\(es\) \[12\].*0–9"):
        ATTACKS.build("ppa").invert(natural, [3, 12], prior=prior)


def test_missing_access_is_named(world):
    prior, _, natural, _ = world
    labels_only = Target(natural._model, natural.info, Access.LABELS)
    for name in INVERSION:
        with pytest.raises(AccessDenied, match="input_gradients"):
            ATTACKS.build(name).invert(labels_only, prior=prior)


def test_prior_attacks_need_a_prior(world):
    _, _, natural, _ = world
    with pytest.raises(ValueError, match="generative prior"):
        ATTACKS.build("ppa").invert(natural)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="per_class"):
        ATTACKS.build("ppa", candidates=3, per_class=5)
    with pytest.raises(ValueError, match="identity loss"):
        ATTACKS.build("ppa", loss="l7")
    with pytest.raises(ValueError, match="restarts"):
        ATTACKS.build("mi_face", restarts=2, per_class=5)


def test_one_nearest_neighbour_accuracy_uses_the_given_labels(world, digits):
    _, evaluator, _, _ = world
    x, y = digits.members.x[:60], digits.members.y[:60]
    shuffled = Split(digits.members.x, digits.members.y.roll(1))
    own = inversion_metrics(evaluator, x, y, digits.members, num_classes=10)
    other = inversion_metrics(evaluator, x, y, shuffled, num_classes=10)
    assert own["nn_acc1"] == 1.0 and other["nn_acc1"] < 0.3


def test_prior_initialisation_is_fixed_by_its_seed_alone():
    torch.manual_seed(1)
    a = VAE((1, 8, 8), latent=4, hidden=16, seed=3)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = VAE((1, 8, 8), latent=4, hidden=16, seed=3)
    c = VAE((1, 8, 8), latent=4, hidden=16, seed=4)
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a.parameters(), c.parameters(), strict=True))
    torch.manual_seed(1)
    VAE((1, 8, 8), seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
