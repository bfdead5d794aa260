"""Feature matching (Liu et al. 2025, Fig. 4): last-layer feature recovery + gradient inversion."""

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import random_images, server_target
from privlab.attacks.gradient_inversion.feature_matching import _feature_loss
from privlab.attacks.gradient_inversion.feature_recovery import (
    FeatureEstimate,
    _pruned_entries,
    recover_batch_features,
    recover_features,
)
from privlab.federated import GradientObservation, client_update
from privlab.federated.defences import DEFENCES
from privlab.metrics.image_quality import match_reconstructions
from privlab.registry import ATTACKS
from privlab.threat_model import Access

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)


def _target(model):
    return server_target(model, input_shape=SHAPE, num_classes=10)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _distinct_batch(digits, n):
    seen, rows = set(), []
    for i, c in enumerate(digits.members.y.tolist()):
        if c not in seen:
            seen.add(c)
            rows.append(i)
        if len(rows) == n:
            break
    return digits.members.x[rows], digits.members.y[rows]


def _labelled_batch(digits, labels):
    """The first unused member of each requested label, in the order asked."""
    ys = digits.members.y.tolist()
    used: set[int] = set()
    rows = []
    for c in labels:
        i = next(i for i, v in enumerate(ys) if v == c and i not in used)
        used.add(i)
        rows.append(i)
    return digits.members.x[rows], digits.members.y[rows]


def _true_features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The last Linear's input, read by a forward hook: independent of the recovery."""
    captured: dict[str, torch.Tensor] = {}
    handle = model[-1].register_forward_pre_hook(lambda _m, inputs: captured.update(h=inputs[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return captured["h"]


def _relative_error(got: torch.Tensor, true: torch.Tensor) -> float:
    return float(((got - true).norm(dim=1) / true.norm(dim=1)).max())


def _error_up_to_order(got: torch.Tensor, true: torch.Tensor, y: torch.Tensor) -> float:
    """Smallest error over reorderings among equal labels (same-label examples are
    interchangeable: the attack pairs x̂_i with ĥ_i and y_i only by index)."""
    errors = [
        _relative_error(got, true[list(perm)])
        for perm in itertools.permutations(range(len(y)))
        if all(y[p] == y[i] for i, p in enumerate(perm))
    ]
    return min(errors)


def _group_sum_error(estimate: FeatureEstimate, true: torch.Tensor) -> float:
    pairs = [(estimate.features[list(g)].sum(0), true[list(g)].sum(0)) for g in estimate.groups]
    return max(float((a - b).norm() / b.norm()) for a, b in pairs)


def _prune_all_but_last(model: nn.Module, obs: GradientObservation, fraction: float = 0.9):
    """Per-tensor pruning of the smallest ``fraction`` of every tensor but the last layer's."""
    last = set(list(dict(model.named_parameters()))[-2:])
    out = {}
    for n, g in obs.gradients.items():
        if n in last:
            out[n] = g
            continue
        keep = max(1, round((1 - fraction) * g.numel()))
        threshold = g.abs().flatten().topk(keep).values.min()
        out[n] = torch.where(g.abs() >= threshold, g, 0.0)
    return obs.with_gradients(out)


def _psnr(name, model, obs, x, **params):
    attack = ATTACKS.build(name, iterations=300, restarts=1, **params)
    result = attack.invert(_target(model), obs, seed=0)
    return float(match_reconstructions(result.images, x).psnr.mean())


def test_registered_as_gradient_inversion():
    cls = ATTACKS.get("feature_matching")
    assert cls.family == "gradient_inversion"
    assert cls.requires == Access.PARAM_GRADIENTS | Access.WEIGHTS  # it reads the last layer
    assert ATTACKS.build("feature_matching").params()["feature_weight"] == 1.0


def test_batch_one_features_are_recovered_exactly(digits):
    for seed, i in [(0, 0), (1, 7), (2, 13)]:
        model = _mlp(seed)
        x, y = digits.members.x[i : i + 1], digits.members.y[i : i + 1]
        got = recover_features(model, client_update(model, x, y))
        with torch.no_grad():
            true = model[:3](x)
        assert got.shape == true.shape
        assert float((got - true).abs().max()) < 1e-5


@pytest.mark.parametrize("labels", [(0, 1), (0, 1, 5, 9), (7, 3, 8, 2)])
def test_batch_features_are_recovered_exactly(digits, labels):
    """Distinct labels: the fixed point solves the last layer's equations to float precision,
    where the row-ratio estimate is off by tens of percent."""
    x, y = _labelled_batch(digits, labels)
    for seed in range(3):
        model = _mlp(seed)
        obs = client_update(model, x, y)
        estimate = recover_batch_features(model, obs, y)
        true = _true_features(model, x)
        assert estimate.method == "least_squares" and estimate.residual < 1e-6
        assert estimate.groups == tuple((i,) for i in range(len(labels)))
        assert estimate.features.shape == true.shape
        assert _relative_error(estimate.features, true) < 1e-5
        gw, gb = obs.gradients["3.weight"], obs.gradients["3.bias"]
        rows = torch.stack([gw[c] / gb[c] for c in y.tolist()])
        assert _relative_error(rows, true) > 0.05


def test_batch_one_with_its_label_is_exact_too(digits):
    x, y = digits.members.x[3:4], digits.members.y[3:4]
    model = _mlp(1)
    obs = client_update(model, x, y)
    estimate = recover_batch_features(model, obs, y)
    assert estimate.method == "least_squares"
    assert _relative_error(estimate.features, _true_features(model, x)) < 1e-5
    assert _relative_error(recover_features(model, obs), _true_features(model, x)) < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defended_features_beat_the_row_estimate_with_calibrated_errors(digits, seed):
    """Half the update pruned: the censored fit stays within 1 % (the row estimate: 15–45 %
    off). Gaussian noise: errors of a few percent, estimated within a factor 1.5."""
    x, y = _labelled_batch(digits, (0, 1, 5, 9))
    model = _mlp(seed)
    true = _true_features(model, x)
    gen = torch.Generator().manual_seed(0)
    pruned = DEFENCES.build("pruning", p=0.5).apply(model, x, y)
    assert bool((pruned.gradients["3.weight"] == 0).any())
    assert _relative_error(recover_features(model, pruned, y), true) < 0.01
    noisy = DEFENCES.build("gaussian", std=1e-3, relative=True).apply(model, x, y, generator=gen)
    estimate = recover_batch_features(model, noisy, y)
    errors = (estimate.features - true).norm(dim=1) / true.norm(dim=1)
    assert float(errors.max()) < 0.05
    ratio = estimate.errors / errors.double()
    assert float(ratio.min()) > 1 / 1.5 and float(ratio.max()) < 1.5
    gw, gb = noisy.gradients["3.weight"], noisy.gradients["3.bias"]
    rows = torch.stack([gw[c] / gb[c] for c in y.tolist()])
    assert _relative_error(rows, true) > 0.15


def test_only_scattered_zeros_count_as_pruned():
    """A zero column (dead unit) or row (class of probability 0) is an exact zero."""
    observed = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 4.0]])
    expected = torch.tensor(
        [[False, False, False, True], [False, False, False, False], [False, False, True, False]]
    )
    assert torch.equal(_pruned_entries(observed), expected)


def test_features_follow_the_order_of_the_labels_given(digits):
    x, y = _labelled_batch(digits, (0, 1, 5, 9))
    model = _mlp(0)
    obs = client_update(model, x, y)
    perm = [2, 0, 3, 1]
    got = recover_features(model, obs, y[perm])
    assert _relative_error(got, _true_features(model, x)[perm]) < 1e-5


@pytest.mark.parametrize("labels", [(5, 5, 0), (3, 4, 3, 9)])
def test_a_repeated_pair_is_split_exactly(digits, labels):
    """One repeated label (B ≤ C − 1): exact up to the order of the two members."""
    x, y = _labelled_batch(digits, labels)
    for seed in range(3):
        model = _mlp(seed)
        estimate = recover_batch_features(model, client_update(model, x, y), y)
        assert estimate.groups == tuple((i,) for i in range(len(labels)))
        assert _error_up_to_order(estimate.features, _true_features(model, x), y) < 1e-4


@pytest.mark.parametrize("labels", [(5, 5, 1, 1, 0), (5, 5, 5, 0)])
def test_several_repeats_are_matched_by_class(digits, labels):
    """Two repeated pairs or a triple: the within-class splits can mix, so only the per-class
    sums are returned (each member holding the mean), accurate to second order."""
    x, y = _labelled_batch(digits, labels)
    model = _mlp(0)
    estimate = recover_batch_features(model, client_update(model, x, y), y)
    groups = [sorted(g) for g in estimate.groups]
    assert sorted(groups) == sorted(
        [i for i, v in enumerate(labels) if v == c] for c in dict.fromkeys(labels)
    )
    for g in estimate.groups:
        assert all(torch.equal(estimate.features[g[0]], estimate.features[i]) for i in g)
    assert _group_sum_error(estimate, _true_features(model, x)) < 0.02


def test_defended_repeated_pair_falls_back_to_its_sum(digits):
    """Pruning swamps the weak split signal: the pair is matched by its sum, which (like the
    single examples) is closer than the row-ratio estimate (~25 % against ~45 % off)."""
    x, y = _labelled_batch(digits, (5, 5, 0, 1))
    model = _mlp(0)
    obs = DEFENCES.build("pruning", p=0.9).apply(model, x, y)
    estimate = recover_batch_features(model, obs, y)
    assert estimate.groups == ((0, 1), (2,), (3,))
    assert torch.equal(estimate.features[0], estimate.features[1])
    gw, gb = obs.gradients["3.weight"], obs.gradients["3.bias"]
    rows = torch.stack([gw[c] / gb[c] for c in y.tolist()])
    row_estimate = dataclasses.replace(estimate, features=rows)
    true = _true_features(model, x)
    assert _group_sum_error(estimate, true) < 0.35
    assert _group_sum_error(estimate, true) < _group_sum_error(row_estimate, true) - 0.1


def test_more_examples_than_classes(digits):
    """B > C: with every class present Γ is rank-deficient even per class, so each example
    gets the row-ratio estimate; with fewer classes the per-class sums are still solved."""
    model = _mlp(0)
    x, y = _labelled_batch(digits, (*range(10), 0, 1))
    estimate = recover_batch_features(model, client_update(model, x, y), y)
    assert estimate.method == "rows" and estimate.features.shape == (12, 32)
    assert bool(estimate.features.isfinite().all())
    x, y = _labelled_batch(digits, (0, 1, 2, 3) * 3)
    estimate = recover_batch_features(model, client_update(model, x, y), y)
    assert estimate.method == "least_squares" and len(estimate.groups) == 4
    assert _group_sum_error(estimate, _true_features(model, x)) < 0.02


def test_fedavg_pseudo_gradient_is_approximately_inverted(digits):
    """Several local steps: solved as one gradient at θ₀ (rescaled by B/local_steps); close
    while θ moves little."""
    x, y = _labelled_batch(digits, (0, 1, 5, 9))
    model = _mlp(0)
    obs = client_update(model, x, y, local_steps=2, lr=0.01)
    assert _relative_error(recover_features(model, obs, y), _true_features(model, x)) < 0.05


def test_zero_update_gives_zero_features_and_no_feature_term(digits):
    x, y = _labelled_batch(digits, (0, 1))
    model = _mlp(0)
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    obs = GradientObservation(gradients=zeros, batch_size=2)
    estimate = recover_batch_features(model, obs, y)
    assert bool((estimate.features == 0).all())
    assert float(_feature_loss(estimate)(torch.randn(2, 32))) == 0.0
    attack = ATTACKS.build("feature_matching", iterations=3, restarts=1)
    result = attack.invert(_target(model), obs)
    assert bool(result.images.isfinite().all())


def test_feature_loss_matches_groups_by_their_sum_weighted_by_reliability():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    errors = torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64)
    estimate = FeatureEstimate(feats, ((0, 1), (2,)), errors, "least_squares", 0.1)
    exact = _feature_loss(estimate)
    assert float(exact(torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))) == 0.0
    off = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # last row: 1/4 relative error²
    assert float(exact(off)) == pytest.approx((1 / 3) * (1 / 4))
    # the third row's estimated error 0.1 = 2 × tolerance divides its weight by 1 + 2²
    assert float(_feature_loss(estimate, 0.05)(off)) == pytest.approx((1 / 3) * (1 / 4) / 5)


def test_batch_needs_labels(digits):
    x, y = _labelled_batch(digits, (0, 1))
    model = _mlp(0)
    obs = client_update(model, x, y)
    with pytest.raises(ValueError, match="labels"):
        recover_features(model, obs)
    with pytest.raises(ValueError, match="labels"):
        recover_features(model, obs, y[:1])


@pytest.mark.parametrize("labels", [(0, 1, 5, 9), (5, 5, 0)])
def test_exact_features_lift_an_undefended_attack_above_inverting_gradients(digits, labels):
    """Undefended batch (a repeated pair included): the recovered features are exact and the
    attack beats plain IG by a wide margin (~45 vs ~37 dB; ~42 vs ~35 dB with the pair)."""
    x, y = _labelled_batch(digits, labels)
    model = _mlp(0)
    obs = client_update(model, x, y)
    assert (
        _psnr("feature_matching", model, obs, x) > _psnr("inverting_gradients", model, obs, x) + 3
    )


def test_feature_matching_is_more_robust_to_pruning_than_inverting_gradients(digits):
    """90% of the first layer's entries pruned, last layer kept: the feature term still sees
    the (intact) last layer, so over four models it beats plain IG (~19.3 vs ~18.0 dB)."""
    x, y = _distinct_batch(digits, 2)
    ig, fm = [], []
    for seed in range(4):
        model = _mlp(seed)
        obs = _prune_all_but_last(model, client_update(model, x, y))
        ig.append(_psnr("inverting_gradients", model, obs, x))
        fm.append(_psnr("feature_matching", model, obs, x, feature_weight=3.0))
    assert sum(fm) / 4 >= sum(ig) / 4 + 0.5, (ig, fm)


def test_feature_matching_alone_beats_noise(digits):
    """Features alone (32 ReLU units of a 64-pixel input: underdetermined) give ~11 dB
    against ~6 dB for noise, a real but modest signal."""
    x, y = _distinct_batch(digits, 2)
    model = _mlp(0)
    obs = _prune_all_but_last(model, client_update(model, x, y))
    alone = _psnr("feature_matching", model, obs, x, gradient_weight=0.0, feature_weight=1.0)
    noise = random_images(2, SHAPE, (0.0, 1.0), torch.Generator().manual_seed(0))
    chance = float(match_reconstructions(noise, x).psnr.mean())
    assert alone > chance + 3, (alone, chance)


def test_last_layer_must_be_linear_with_bias(digits):
    x, y = digits.members.x[:1], digits.members.y[:1]
    attack = ATTACKS.build("feature_matching", iterations=2, restarts=1)
    # the logits come from a Conv1d, not an nn.Linear
    bad = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 10), nn.Unflatten(1, (1, 10)), nn.Conv1d(1, 1, 1)
    )
    grads = {n: torch.zeros_like(p) for n, p in bad.named_parameters()}
    obs = GradientObservation(gradients=grads, batch_size=1)
    with pytest.raises(ValueError, match="nn.Linear"):
        attack.invert(_target(bad), obs)
    no_bias = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False))
    obs = client_update(no_bias, x, y)
    with pytest.raises(ValueError, match="bias"):
        attack.invert(_target(no_bias), obs)
    with pytest.raises(ValueError):
        ATTACKS.build("feature_matching", feature_weight=0.0, gradient_weight=0.0)
