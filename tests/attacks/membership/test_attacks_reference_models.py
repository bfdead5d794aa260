"""LiRA, RMIA and the shadow-model attack: formulas checked against independent computations,
strength against a leaky model, and the errors of a wrong set-up."""

import numpy as np
import pytest
import torch
from scipy import stats

from privlab.attacks.membership.queries import augmented, logit_scaled
from privlab.metrics.membership import auc
from privlab.registry import ATTACKS
from privlab.threat_model import Knowledge, ReferenceModels
from trained import reference_models, small_target


def _auc(attack, target, bundle):
    s_in = attack.score(target, bundle.members.x, bundle.members.y)
    s_out = attack.score(target, bundle.nonmembers.x, bundle.nonmembers.y)
    return auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])


def test_reference_attacks_beat_the_loss_attack_on_a_leaky_model(overfit, tiny):
    target, knowledge = overfit
    base = _auc(ATTACKS.build("loss_threshold").fit(knowledge), target, tiny)
    lira = _auc(ATTACKS.build("lira", variance="global").fit(knowledge), target, tiny)
    rmia = _auc(ATTACKS.build("rmia").fit(knowledge), target, tiny)
    assert lira > base + 0.03 and rmia > base + 0.03


def test_lira_scores_are_the_gaussian_likelihood_ratio(overfit, tiny):
    target, knowledge = overfit
    refs = knowledge.reference_models
    x, y = tiny.members.x[:5], tiny.members.y[:5]
    online = ATTACKS.build("lira", variance="per_example").fit(knowledge).score(target, x, y)
    offline = ATTACKS.build("lira", mode="offline", variance="per_example")
    offline = offline.fit(knowledge).score(target, x, y)
    inside = refs.membership(x, y)
    for j in range(5):
        # independent: φ from logits (not from probabilities), statistics with numpy
        logits = [r._model(x[j : j + 1]).double()[0] for r in refs.targets]
        phi = np.array(
            [(z[y[j]] - torch.logsumexp(z[torch.arange(4) != y[j]], 0)).item() for z in logits]
        )
        z_t = target._model(x[j : j + 1]).double()[0]
        phi_t = (z_t[y[j]] - torch.logsumexp(z_t[torch.arange(4) != y[j]], 0)).item()
        ins, outs = phi[inside[:, j]], phi[~inside[:, j]]
        expected = stats.norm.logpdf(phi_t, ins.mean(), ins.std()) - stats.norm.logpdf(
            phi_t, outs.mean(), outs.std()
        )
        assert online[j] == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert offline[j] == pytest.approx(
            -stats.norm.logsf(phi_t, outs.mean(), outs.std()), rel=1e-5, abs=1e-5
        )


def test_rmia_score_is_the_share_of_dominated_population_points(overfit, tiny):
    target, knowledge = overfit
    refs = knowledge.reference_models
    attack = ATTACKS.build("rmia", mode="offline", a=0.4, num_z=50).fit(knowledge)
    x, y = tiny.nonmembers.x[:6], tiny.nonmembers.y[:6]
    scores = attack.score(target, x, y)

    def prob(model, xs, ys):
        return model.predict_proba(xs)[torch.arange(len(ys)), ys].numpy()

    def ratio(xs, ys):
        ref = np.stack([prob(r, xs, ys) for r in refs.targets])
        out = ~refs.membership(xs, ys)
        p_out = np.array([ref[out[:, j], j].mean() for j in range(len(ys))])
        return prob(target, xs, ys) / (0.5 * (1.4 * p_out + 0.6))

    z = attack._z
    r_z = ratio(z.x, z.y)
    for j, r_x in enumerate(ratio(x, y)):
        share = np.mean([r_x / rz >= 1.0 for rz in r_z])
        assert share <= scores[j] < share + 1 / len(r_z)


def test_online_attacks_need_references_trained_on_the_candidates(tiny):
    offline_refs = reference_models(tiny, count=2, epochs=1, online=False)
    knowledge = Knowledge(population=tiny.population, reference_models=offline_refs)
    for name in ("lira", "rmia"):
        with pytest.raises(ValueError, match="online"):
            ATTACKS.build(name).fit(knowledge)
    target = offline_refs.targets[0]
    s = (
        ATTACKS.build("lira", mode="offline")
        .fit(knowledge)
        .score(target, tiny.members.x[:4], tiny.members.y[:4])
    )
    assert np.isfinite(s).all()


@pytest.mark.parametrize("name", ["lira", "rmia", "shokri"])
def test_reference_model_attacks_refuse_knowledge_without_reference_models(name):
    with pytest.raises(ValueError, match="reference models"):
        ATTACKS.build(name).fit(Knowledge())


def test_reference_models_look_up_membership_by_content(tiny):
    pool = tiny.population
    masks = np.zeros((2, len(pool)), dtype=bool)
    masks[0, :3] = True
    refs = ReferenceModels([None, None], pool, masks, online=False)  # type: ignore[list-item]
    x = torch.cat([pool.x[:4], tiny.members.x[:1]])
    y = torch.cat([pool.y[:4], tiny.members.y[:1]])
    assert refs.pool_index(x, y).tolist() == [0, 1, 2, 3, -1]
    assert refs.membership(x, y).tolist() == [[True] * 3 + [False] * 2, [False] * 5]
    with pytest.raises(ValueError, match="shape"):
        ReferenceModels([None], pool, masks, online=False)  # type: ignore[list-item]


def test_augmented_queries_shift_images_and_refuse_too_many(tiny):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = augmented(x, 3, flip=True)
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(-1))
    assert torch.equal(views[2][..., :, 1:], x[..., :, :-1])  # shifted right by one pixel
    with pytest.raises(ValueError, match="queries"):
        augmented(torch.zeros(2, 64), 2)


def test_logit_scaled_confidence_survives_saturated_probabilities(overfit, tiny):
    target, _ = overfit
    phi = logit_scaled(target, tiny.members.x, tiny.members.y, 1)
    assert np.isfinite(phi).all() and phi.max() > 10  # p_y ≈ 1 would give log(0) naively


def test_lira_loses_to_a_strong_dp_defence(tiny):
    """Target and reference models trained with heavy DP noise (ε < 1): LiRA is at chance."""
    from privlab.registry import MODELS, REGIMES
    from privlab.studies.targets.reference_models import balanced_masks, reference_pool
    from privlab.training.ensembles import train_ensemble
    from privlab.training.loop import TrainSpec, train

    regime, spec = (
        REGIMES.build("dp_sgd", noise_multiplier=8.0),
        TrainSpec(epochs=15, batch_size=16),
    )

    def make(seed):
        torch.manual_seed(seed)
        return MODELS.build("mlp", input_shape=tiny.input_shape, num_classes=4, hidden=[64])

    dp = train(make(0), tiny.members, regime, spec, seed=0)
    assert dp.summary["epsilon"] < 1.0
    pool = reference_pool(tiny, online=True)
    masks = balanced_masks(len(pool), 8, 0.5, seed=3)
    refs = train_ensemble(make, pool, masks, regime, spec, seeds=list(range(100, 108)))
    knowledge = Knowledge(
        population=tiny.population,
        reference_models=ReferenceModels(
            [small_target(r.model, tiny) for r in refs], pool, masks, online=True
        ),
    )
    attack = ATTACKS.build("lira", variance="global").fit(knowledge)
    assert abs(_auc(attack, small_target(dp.model, tiny), tiny) - 0.5) < 0.08


def test_lira_variance_auto_is_global_below_64_reference_models(overfit, tiny):
    target, knowledge = overfit
    x, y = tiny.members.x[:10], tiny.members.y[:10]
    auto = ATTACKS.build("lira").fit(knowledge).score(target, x, y)
    pooled = ATTACKS.build("lira", variance="global").fit(knowledge).score(target, x, y)
    assert np.array_equal(auto, pooled)
    with pytest.raises(ValueError, match="variance"):
        ATTACKS.build("lira", variance="median")
