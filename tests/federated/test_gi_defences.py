"""Defences against gradient inversion: pruning, quantisation, DP-SGD, secure aggregation."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats
from torch import nn

from privlab.attacks.gradient_inversion.base import random_images, server_target
from privlab.federated import check_observation, client_update
from privlab.federated.defences import (
    DEFENCES,
    DPSGD,
    Defence,
    NoDefence,
    Pruning,
    Quantisation,
    SecureAggregation,
    defended_update,
)
from privlab.federated.defences.dp_sgd import per_example_gradients
from privlab.federated.defences.linear_clipping import linear_clipped_sum
from privlab.metrics.image_quality import match_reconstructions
from privlab.registry import ATTACKS, MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
ALL = ["dp", "dropout", "gaussian", "none", "pruning", "quantisation", "secure_aggregation"]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _cnn(seed=0):
    torch.manual_seed(seed)
    return MODELS.build("cnn_small", input_shape=SHAPE, num_classes=10, channels=(16, 32), fc=64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(digits, n=8):
    return digits.members.x[:n], digits.members.y[:n]


def _grads(seed=0):
    """A fake update with continuous entries (no ties, no zeros)."""
    g = _gen(seed)
    return {
        "a.weight": torch.randn(20, 30, generator=g),
        "a.bias": torch.randn(20, generator=g),
        "b.weight": 0.01 * torch.randn(10, 20, generator=g),
    }


# ---------------------------------------------------------------------------- the interface


def test_every_defence_is_registered_with_its_parameters():
    assert DEFENCES.names() == ALL
    for name in ALL:
        defence = DEFENCES.build(name)
        assert isinstance(defence, Defence) and defence.name == name
        assert isinstance(defence.params(), dict)
        assert DEFENCES.describe(name)
    assert DEFENCES.build("pruning", p=0.99).params() == {"p": 0.99, "scope": "global"}
    with pytest.raises(TypeError, match="bad parameters for defence 'pruning'"):
        DEFENCES.build("pruning", rate=0.5)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("steps", "local_batch"), [(1, None), (3, 4)])
def test_every_defence_gives_a_valid_observation(digits, name, steps, local_batch):
    model = _mlp()
    x, y = _batch(digits)
    before = copy.deepcopy(model.state_dict())
    obs = defended_update(
        model,
        x,
        y,
        DEFENCES.build(name),
        local_steps=steps,
        lr=0.1,
        local_batch=local_batch,
        generator=_gen(),
    )
    check_observation(model, obs)
    clean = client_update(model, x, y, local_steps=steps, lr=0.1, local_batch=local_batch)
    assert (obs.batch_size, obs.local_steps, obs.lr, obs.local_batch) == (
        clean.batch_size,
        clean.local_steps,
        clean.lr,
        clean.local_batch,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("steps", "local_batch"), [(1, None), (3, 4)])
def test_no_defence_is_the_client_update(digits, steps, local_batch):
    model = _mlp()
    x, y = _batch(digits)
    clean = client_update(model, x, y, local_steps=steps, lr=0.1, local_batch=local_batch)
    for defence in (None, NoDefence()):
        obs = defended_update(model, x, y, defence, local_steps=steps, local_batch=local_batch)
        assert all(torch.equal(obs.gradients[n], g) for n, g in clean.gradients.items())


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("pruning", {"p": 1.0}, "p"),
        ("pruning", {"p": -0.1}, "p"),
        ("pruning", {"scope": "row"}, "scope"),
        ("quantisation", {"bits": 0}, "bits"),
        ("quantisation", {"bits": 2.5}, "bits"),
        ("quantisation", {"mode": "floor"}, "mode"),
        ("dp", {"clip": 0.0}, "clip"),
        ("dp", {"clip": -1.0}, "clip"),
        ("dp", {"clip": math.inf}, "clip"),
        ("dp", {"noise_multiplier": -1.0}, "noise_multiplier"),
        ("secure_aggregation", {"clients": 0}, "clients"),
        ("gaussian", {"std": -1.0}, "std"),
        ("dropout", {"p": 1.0}, "p"),
    ],
)
def test_bad_parameters_are_refused_by_name(name, params, field):
    with pytest.raises(ValueError, match=field):
        DEFENCES.build(name, **params)


def test_randomised_defences_need_a_generator_and_are_reproducible(digits):
    model = _mlp()
    x, y = _batch(digits, 4)
    randomised = ("gaussian", "dropout")
    for defence in (
        DPSGD(noise_multiplier=1.0),
        Quantisation(bits=2),
        *map(DEFENCES.build, randomised),
    ):
        with pytest.raises(ValueError, match="seeded torch.Generator"):
            defended_update(model, x, y, defence)
        a = defended_update(model, x, y, defence, generator=_gen(5))
        b = defended_update(model, x, y, defence, generator=_gen(5))
        assert all(torch.equal(a.gradients[n], b.gradients[n]) for n in a.gradients)


def test_defend_applies_an_update_transform_to_an_existing_observation(digits):
    model = _mlp()
    x, y = _batch(digits, 4)
    pruning = Pruning(p=0.9)
    via_apply = defended_update(model, x, y, pruning)
    via_defend = pruning.defend(client_update(model, x, y))
    assert all(
        torch.equal(via_apply.gradients[n], via_defend.gradients[n]) for n in via_apply.gradients
    )
    for defence in (DPSGD(), SecureAggregation(), DEFENCES.build("dropout")):
        with pytest.raises(ValueError, match="apply"):
            defence.defend(client_update(model, x, y))


# ---------------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 0.99, 0.999])
def test_global_pruning_keeps_exactly_the_largest_fraction(p):
    grads = _grads()
    pruned = Pruning(p=p).transform(grads)
    flat = torch.cat([g.flatten() for g in grads.values()])
    out = torch.cat([pruned[n].flatten() for n in grads])
    keep = max(1, round((1 - p) * flat.numel()))
    kept = out != 0
    assert int(kept.sum()) == keep
    assert torch.equal(out[kept], flat[kept])  # survivors unchanged
    if keep < flat.numel():
        assert float(flat[kept].abs().min()) > float(flat[~kept].abs().max())
    assert {n: t.shape for n, t in pruned.items()} == {n: t.shape for n, t in grads.items()}


def test_global_pruning_ranks_across_layers_and_layer_scope_does_not():
    grads = _grads()  # b.weight is 100× smaller than the rest
    glob = Pruning(p=0.9).transform(grads)
    assert int((glob["b.weight"] != 0).sum()) == 0  # all its entries lose globally
    per_layer = Pruning(p=0.9, scope="layer").transform(grads)
    for n, g in grads.items():
        kept = per_layer[n] != 0
        assert int(kept.sum()) == max(1, round(0.1 * g.numel()))
        if not kept.all():
            assert float(g[kept].abs().min()) > float(g[~kept].abs().max())


def test_pruning_with_ties_still_keeps_exactly_k():
    grads = {"w": torch.ones(10, 10)}
    assert int((Pruning(p=0.93).transform(grads)["w"] != 0).sum()) == 7


# ----------------------------------------------------------------------------- quantisation


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_stochastic_quantisation_is_unbiased_and_stays_between_neighbours(bits):
    g = torch.randn(50, generator=_gen(1), dtype=torch.float64).clamp(-2.9, 2.9)
    g[0] = 3.0  # the scale s = max|g|
    draws = 4000
    q = Quantisation(bits=bits).quantise(g.repeat(draws, 1), _gen(2))  # one scale, many draws
    step = 2 * 3.0 / (2**bits - 1)
    assert float((q - g).abs().max()) <= step + 1e-9  # only the two neighbouring levels
    # each entry's rounding error has std ≤ Δ/2: a 5-sigma bound on the mean
    bound = 5 * (step / 2) / math.sqrt(draws)
    assert float((q.mean(0) - g).abs().max()) < bound
    levels = torch.unique(q)
    assert len(levels) <= 2**bits
    on_grid = (levels + 3.0) / step
    assert torch.allclose(on_grid, on_grid.round(), atol=1e-9)


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_nearest_quantisation_has_2_to_the_bits_levels(bits):
    g = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    q = Quantisation(bits=bits, mode="nearest").quantise(g)
    assert len(torch.unique(q)) == 2**bits
    step = 2 / (2**bits - 1)
    assert float((q - g).abs().max()) <= step / 2 + 1e-12
    assert float(q.min()) == -1.0 and float(q.max()) == 1.0


def test_sign_quantisation_and_zero_tensors():
    g = torch.tensor([0.5, -1.5, 2.0, -1.0])
    q = Quantisation(mode="sign").quantise(g)
    assert q.tolist() == [1.25, -1.25, 1.25, -1.25]  # sign × mean|g|
    assert torch.equal(Quantisation(bits=3).quantise(torch.zeros(5), _gen()), torch.zeros(5))


# ------------------------------------------------------------------------------------ DP-SGD


@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_per_example_gradients_vmap_equals_the_loop_and_autograd(digits, make):
    model = make()
    x, y = _batch(digits, 3)
    params = {n: p.detach() for n, p in model.named_parameters()}
    fast = per_example_gradients(model, params, x, y, method="vmap")
    slow = per_example_gradients(model, params, x, y, method="loop")
    for k in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[k : k + 1]), y[k : k + 1]).backward()
        for n, p in model.named_parameters():
            assert torch.allclose(fast[n][k], p.grad, atol=1e-6), n
            assert torch.allclose(slow[n][k], p.grad, atol=1e-6), n


def _clipped_sum_by_loop(model, x, y, clip):
    """Independent reference: nn.Module autograd per example, clipped over all parameters."""
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    norms = []
    for k in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[k : k + 1]), y[k : k + 1]).backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
        norms.append(norm)
        for n, p in model.named_parameters():
            total[n] += p.grad * min(1.0, clip / norm)
    model.zero_grad()
    return total, norms


def test_dp_clipping_bounds_every_examples_contribution(digits):
    model = _mlp()
    x, y = _batch(digits, 6)
    clip = 0.5
    ref, norms = _clipped_sum_by_loop(copy.deepcopy(model), x, y, clip)
    assert max(norms) > clip  # the clipping is active for some examples
    obs = defended_update(model, x, y, DPSGD(clip=clip, noise_multiplier=0.0))
    for n, g in obs.gradients.items():
        assert torch.allclose(g * len(x), ref[n], atol=1e-6), n
    # one example: the update's norm is at most C; replacing one example moves B·G̃ by ≤ 2C
    single = defended_update(model, x[:1], y[:1], DPSGD(clip=clip, noise_multiplier=0.0))
    assert single.norm() <= clip + 1e-6
    x2, y2 = x.clone(), y.clone()
    x2[0], y2[0] = digits.members.x[100], digits.members.y[100]
    other = defended_update(model, x2, y2, DPSGD(clip=clip, noise_multiplier=0.0))
    diff = math.sqrt(
        sum(float((obs.gradients[n] - other.gradients[n]).pow(2).sum()) for n in obs.gradients)
    )
    assert diff * len(x) <= 2 * clip + 1e-6
    # a huge clip changes nothing: the plain mean gradient
    plain = defended_update(model, x, y, DPSGD(clip=1e9, noise_multiplier=0.0))
    exact = client_update(model, x, y)
    assert all(
        torch.allclose(plain.gradients[n], exact.gradients[n], atol=1e-6) for n in exact.gradients
    )


class _Shared(nn.Module):
    """One linear layer applied twice: its weight gradient is not one outer product."""

    def __init__(self):
        super().__init__()
        self.flat, self.inner, self.out = nn.Flatten(), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.out(self.inner(self.inner(self.flat(x)).relu()))


def test_linear_clipped_sum_is_the_per_example_one_or_declines(digits):
    x, y = _batch(digits, 6)
    model = _mlp()
    ref, norms = _clipped_sum_by_loop(copy.deepcopy(model), x, y, 0.5)
    assert max(norms) > 0.5 and len({round(n, 3) for n in norms}) == 6  # clipped, unequally
    params = {n: p.detach() for n, p in model.named_parameters()}
    fast = linear_clipped_sum(model, params, x, y, 0.5)
    assert fast is not None and list(fast) == list(ref)
    for n, g in fast.items():
        assert torch.allclose(g, ref[n], atol=1e-6), n
    torch.manual_seed(0)
    in_place = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(inplace=True), nn.Linear(32, 10)
    )
    for declined in (_cnn(), in_place, _Shared()):
        own = {n: p.detach() for n, p in declined.named_parameters()}
        assert linear_clipped_sum(declined, own, x, y, 0.5) is None
        # DP-SGD then falls back to per-example gradients: still the reference
        want, _ = _clipped_sum_by_loop(copy.deepcopy(declined), x, y, 0.5)
        obs = defended_update(declined, x, y, DPSGD(clip=0.5, noise_multiplier=0.0))
        assert all(torch.allclose(g * len(x), want[n], atol=1e-6) for n, g in obs.gradients.items())


def test_dp_noise_has_std_sigma_c_over_b(digits):
    model = _mlp()
    x, y = _batch(digits, 4)
    sigma, clip = 2.0, 0.5
    clean = defended_update(model, x, y, DPSGD(clip=clip, noise_multiplier=0.0))
    residuals = []
    for seed in range(3):
        noisy = defended_update(
            model, x, y, DPSGD(clip=clip, noise_multiplier=sigma), generator=_gen(seed)
        )
        residuals += [(noisy.gradients[n] - clean.gradients[n]).flatten() for n in clean.gradients]
    r = torch.cat(residuals).double()
    expected = sigma * clip / len(x)
    assert float(r.std()) == pytest.approx(expected, rel=0.04)  # ~7,300 entries: SE ≈ 0.8 %
    assert abs(float(r.mean())) < 4 * expected / math.sqrt(len(r))


def test_dp_local_steps_follow_the_client_schedule(digits):
    """Without noise and with a clip that never binds, DP-SGD's local loop is FedAvg's."""
    model = _mlp()
    x, y = _batch(digits)
    dp = defended_update(
        model, x, y, DPSGD(clip=1e9, noise_multiplier=0.0), local_steps=3, lr=0.5, local_batch=3
    )
    ref = client_update(model, x, y, local_steps=3, lr=0.5, local_batch=3)
    for n, g in ref.gradients.items():
        assert torch.allclose(dp.gradients[n], g, atol=1e-5), n


def test_dp_refuses_batch_norm(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="BatchNorm"):
        defended_update(model, *_batch(digits, 4), DPSGD(), generator=_gen())


def _rdp_subsampled_gaussian(q, sigma, alpha):
    """Independent RDP of the Poisson-subsampled Gaussian at integer order α (Mironov, Talwar
    and Zhang 2019, binomial expansion): log Σ_k C(α,k)(1−q)^{α−k} q^k e^{(k²−k)/(2σ²)}/(α−1)."""
    k = np.arange(alpha + 1)
    terms = (
        special.gammaln(alpha + 1)
        - special.gammaln(k + 1)
        - special.gammaln(alpha - k + 1)
        + (alpha - k) * np.log1p(-q)
        + k * np.log(q)
        + (k * k - k) / (2 * sigma**2)
    )
    return float(special.logsumexp(terms)) / (alpha - 1)


def _independent_epsilon(q, sigma, steps, delta):
    best = math.inf
    for alpha in range(2, 200):
        rdp = steps * _rdp_subsampled_gaussian(q, sigma, alpha)
        eps = (
            rdp + math.log((alpha - 1) / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        )
        best = min(best, eps)
    return best


def test_dp_epsilon_matches_opacus_and_an_independent_accountant():
    from opacus.accountants import RDPAccountant

    dp = DPSGD(clip=1.0, noise_multiplier=1.1)
    q, steps, delta = 256 / 60000, 60 * 60000 // 256, 1e-5  # Abadi et al.'s MNIST setting
    accountant = RDPAccountant()
    accountant.history = [(1.1, q, steps)]
    eps = dp.epsilon(steps, q, delta)
    assert eps == pytest.approx(accountant.get_epsilon(delta=delta), rel=1e-12)
    assert eps == pytest.approx(_independent_epsilon(q, 1.1, steps, delta), rel=0.1)
    assert 1.0 < eps < 5.0
    # k uses per step = one Gaussian of noise σ/√k; monotone in noise and steps
    assert dp.epsilon(10, 0.1, delta, uses_per_step=4) == pytest.approx(
        DPSGD(noise_multiplier=0.55).epsilon(10, 0.1, delta)
    )
    assert DPSGD(noise_multiplier=2.0).epsilon(10, 0.1, delta) < dp.epsilon(10, 0.1, delta)
    assert dp.epsilon(20, 0.1, delta) > dp.epsilon(10, 0.1, delta)
    assert dp.epsilon(0, 0.1, delta) == 0.0
    assert DPSGD(noise_multiplier=0.0).epsilon(1, 1.0, delta) == math.inf
    with pytest.raises(ValueError, match="sample_rate"):
        dp.epsilon(1, 0.0, delta)


def test_one_observed_dp_update_is_a_valid_gaussian_mechanism_guarantee():
    """q = 1, one step: the RDP ε must be a valid (conservative) bound for the Gaussian
    mechanism, whose exact δ(ε) is Balle & Wang's (2018) formula."""
    delta = 1e-5
    for sigma in (1.0, 3.0, 10.0):
        eps = DPSGD(noise_multiplier=sigma).epsilon(1, 1.0, delta)
        exact_delta = stats.norm.cdf(-eps * sigma + 1 / (2 * sigma)) - math.exp(
            eps
        ) * stats.norm.cdf(-eps * sigma - 1 / (2 * sigma))
        assert exact_delta <= delta
        assert eps < 3 * math.sqrt(2 * math.log(1.25 / delta)) / sigma  # not absurdly loose


# ------------------------------------------------------------------------ secure aggregation


@pytest.mark.parametrize(("steps", "local_batch"), [(1, None), (3, 2)])
def test_secure_aggregation_is_the_sum_of_the_client_updates(digits, steps, local_batch):
    model = _mlp()
    x, y = _batch(digits)  # 8 examples, 3 clients: shards 0–2, 3–5, 6–7
    kw = {"local_steps": steps, "lr": 0.1, "local_batch": local_batch}
    total = defended_update(model, x, y, SecureAggregation(clients=3, reduction="sum"), **kw)
    mean = defended_update(model, x, y, SecureAggregation(clients=3), **kw)
    parts = [
        client_update(model, x[r], y[r], **kw) for r in (slice(0, 3), slice(3, 6), slice(6, 8))
    ]
    assert total.batch_size == mean.batch_size == 8
    for n in total.gradients:
        expected_sum = sum(u.gradients[n] for u in parts)
        expected_mean = sum(u.batch_size / 8 * u.gradients[n] for u in parts)
        assert torch.allclose(total.gradients[n], expected_sum, atol=1e-6), n
        assert torch.allclose(mean.gradients[n], expected_mean, atol=1e-6), n
    if steps == 1:  # one step: the example-weighted mean is the whole batch's gradient
        full = client_update(model, x, y)
        assert all(
            torch.allclose(mean.gradients[n], g, atol=1e-6) for n, g in full.gradients.items()
        )


def test_secure_aggregation_needs_an_example_per_client(digits):
    with pytest.raises(ValueError, match="3 clients"):
        defended_update(_mlp(), *_batch(digits, 2), SecureAggregation(clients=3))
    assert isinstance(SecureAggregation(clients=5).training_defence(), NoDefence)


# -------------------------------------------------------------------- against an attack


def _distinct_batch(digits, n):
    seen, rows = set(), []
    for i, c in enumerate(digits.members.y.tolist()):
        if c not in seen:
            seen.add(c)
            rows.append(i)
        if len(rows) == n:
            break
    return digits.members.x[rows], digits.members.y[rows]


@pytest.fixture(scope="module")
def attack_setting(digits):
    """Inverting Gradients (300 iterations, 1 restart) against a small CNN at initialisation
    and a batch of 4 digits; the PSNR of a uniform-noise guess is the chance level."""
    model = _cnn()
    x, y = _distinct_batch(digits, 4)
    noise = random_images(4, SHAPE, (0, 1), _gen(1))
    chance = float(match_reconstructions(noise, x).psnr.mean())
    attack = ATTACKS.build("inverting_gradients", iterations=300, restarts=1)
    target = server_target(model, input_shape=SHAPE, num_classes=10)

    def psnr(defence):
        obs = defended_update(model, x, y, defence, generator=_gen(0))
        result = attack.invert(target, obs)
        return float(match_reconstructions(result.images, x).psnr.mean())

    return psnr, chance


def test_inverting_gradients_succeeds_without_a_defence(attack_setting):
    psnr, chance = attack_setting
    assert psnr(NoDefence()) > chance + 10  # ~20 dB against ~6 dB


@pytest.mark.parametrize(
    "defence",
    [Pruning(p=0.999), DPSGD(clip=1.0, noise_multiplier=1.0)],
    ids=["pruning_p0.999", "dp_sigma1"],
)
def test_a_strong_defence_leaves_inverting_gradients_at_chance(attack_setting, defence):
    psnr, chance = attack_setting
    assert psnr(defence) < chance + 3
