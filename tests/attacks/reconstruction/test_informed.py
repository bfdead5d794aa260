"""The informed adversary's RecoNN on a small MLP: the known initialisation makes it work."""

import numpy as np
import pytest
import torch

from privlab.attacks.reconstruction.informed import (
    RecoNNAttack,
    informed_shadows,
    informed_success,
)
from privlab.data.bundle import Split
from privlab.metrics.reconstruction import to_symmetric
from privlab.registry import ATTACKS, DATASETS
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo
from privlab.training.heads import HeadSpec, build_head, init_heads, train_heads

SPEC = HeadSpec(outputs=10, hidden=16, sigma_init=0.1, lr=0.5, weight_decay=0.0, epochs=100)


@pytest.fixture(scope="module")
def setting():
    d = DATASETS.build("digits", seed=0)
    fixed = d.members.subset(np.arange(100))  # D₋, known to the adversary
    pool = Split(
        torch.cat([d.nonmembers.x, d.population.x]), torch.cat([d.nonmembers.y, d.population.y])
    )
    return fixed, pool, pool.subset(np.arange(800)), pool.subset(np.arange(1000, 1100))


@pytest.mark.parametrize("known_init", [True, False])
def test_reconnn_recovers_the_unknown_point_only_with_the_initialisation(setting, known_init):
    fixed, pool, shadow_targets, victims = setting
    theta = informed_shadows(SPEC, fixed, shadow_targets, known_init=known_init, seed=1)
    released = informed_shadows(SPEC, fixed, victims, known_init=known_init, seed=2)
    reconnn = ATTACKS.build("reconnn", epochs=30).fit(theta, to_symmetric(shadow_targets.x))
    success = informed_success(reconnn(released), to_symmetric(victims.x), to_symmetric(pool.x))
    if known_init:
        assert success["nn_oracle_success"] > 0.4 and success["mse"] < 0.15
    else:
        assert success["nn_oracle_success"] < 0.1  # chance: ~1 / 1,200 candidates


def test_shared_initialisation_is_the_same_for_every_model(setting):
    fixed, _, targets, _ = setting
    untrained = HeadSpec(outputs=10, hidden=4, epochs=0)
    a = informed_shadows(untrained, fixed, targets.subset(np.arange(3)), known_init=True, seed=1)
    b = informed_shadows(untrained, fixed, targets.subset(np.arange(3)), known_init=True, seed=9)
    assert torch.equal(a, b) and torch.equal(a[0], a[2])
    c = informed_shadows(untrained, fixed, targets.subset(np.arange(3)), known_init=False, seed=1)
    assert not torch.equal(c[0], c[1])


def test_dp_sgd_with_large_epsilon_mitigates_and_respects_the_rero_bound(setting):
    from privlab.metrics.bounds import rero_gamma_dp_sgd
    from privlab.training.heads import HeadDP

    fixed, pool, shadow_targets, victims = setting
    spec = HeadSpec(outputs=10, sigma_init=0.01, lr=0.5, weight_decay=0.0, epochs=50)
    n, kappa = len(fixed) + 1, 1 / len(pool)  # NN-oracle baseline: one pool point per guess
    success = {}
    for eps in (None, 100.0, 1.0):
        dp = (
            None if eps is None else HeadDP(clip=1.0, noise_multiplier=HeadDP.noise_for(eps, n, 50))
        )
        theta = informed_shadows(spec, fixed, shadow_targets, known_init=True, seed=1, dp=dp)
        released = informed_shadows(spec, fixed, victims, known_init=True, seed=2, dp=dp)
        reconnn = RecoNNAttack(epochs=30).fit(theta, to_symmetric(shadow_targets.x))
        success[eps] = informed_success(
            reconnn(released), to_symmetric(victims.x), to_symmetric(pool.x)
        )["nn_oracle_success"]
        if dp is not None:
            bound = rero_gamma_dp_sgd(
                kappa,
                sample_rate=HeadDP.sample_rate(n),
                noise_multiplier=dp.noise_multiplier,
                steps=50 * HeadDP.batches_per_epoch(n),
            )
            assert success[eps] <= bound + 0.02  # empirical success never beats the bound
    assert success[None] > 0.5 and success[100.0] < 0.1 and success[1.0] <= success[100.0]


def test_reconnn_reads_a_released_model_through_its_target(setting):
    """reconstruct(target) flattens the released model's weights as informed_shadows does."""
    fixed, _, shadow_targets, victims = setting
    spec = HeadSpec(outputs=10, hidden=4, sigma_init=0.1, lr=0.5, weight_decay=0.0, epochs=2)
    theta = informed_shadows(spec, fixed, shadow_targets.subset(np.arange(50)), known_init=True)
    attack = ATTACKS.build("reconnn", width=16, epochs=1)
    assert attack.family == "reconstruction" and attack.requires == Access.WEIGHTS
    reconnn = attack.fit(theta, to_symmetric(shadow_targets.x[:50]))
    z = victims.subset(np.arange(1))
    x = torch.cat([fixed.x.flatten(1), z.x.flatten(1)])[None]
    y = torch.cat([fixed.y, z.y])[None]
    init = init_heads(spec, 1, x.shape[2], generator=torch.Generator().manual_seed(0))
    trained = train_heads(spec, init, x, y)
    model = build_head(spec, x.shape[2])
    model.load_state_dict({k: v[0] for k, v in trained.items()})
    info = TargetInfo("released", 10, tuple(fixed.x.shape[1:]))
    flat = torch.cat([v.reshape(1, -1) for v in trained.values()], dim=1)
    image = attack.reconstruct(reconnn, Target(model, info, Access.WEIGHTS))
    assert torch.equal(image, reconnn(flat)) and image.shape == (1, *fixed.x.shape[1:])
    with pytest.raises(AccessDenied, match=r"needs access \['weights'\]"):
        attack.reconstruct(reconnn, Target(model, info, Access.LABELS))
