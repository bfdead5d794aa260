"""The label-only membership attacks (Choquette-Choo et al. 2021): gap, decision-boundary
distance (HopSkipJump search) and augmentation robustness. They run on a target that answers
labels only, beat chance on a leaky model, stay near chance on a model that never saw the
members, are reproducible from their seed, and the boundary search finds the distance to a
linear classifier's boundary that closed form gives, never less."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from privlab.attacks.membership.augmentation_labels import translate, translations
from privlab.data.bundle import DataBundle
from privlab.metrics.membership import auc
from privlab.registry import ATTACKS, DATASETS
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo
from trained import leaky_model, small_target

LABEL_ONLY = ["gap", "boundary_distance", "augmentation_labels"]


def _auc(attack: str, target: Target, bundle: DataBundle, **params: object) -> float:
    built = ATTACKS.build(attack, **params)
    s_in = built.score(target, bundle.members.x, bundle.members.y)
    s_out = built.score(target, bundle.nonmembers.x, bundle.nonmembers.y)
    return auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])


@pytest.fixture(scope="module")
def noisy() -> DataBundle:
    """The tests' synthetic prototypes with more noise (120 members / 120 non-members /
    120 population): a model that memorises its members misclassifies a third of the others,
    so even the gap attack has a signal to find."""
    return DATASETS.build("synthetic", n=360, num_classes=4, noise=1.0, seed=0)


@pytest.fixture(scope="module")
def leaky(noisy: DataBundle) -> Target:
    """A leaky target (many epochs on few members), seen through its labels alone."""
    return small_target(leaky_model(noisy, noisy.members, epochs=60), noisy, Access.LABELS)


@pytest.fixture(scope="module")
def unseen(noisy: DataBundle) -> Target:
    """Trained like the leaky target, on the population: the members are as unseen as the
    non-members (the strongest defence there is)."""
    return small_target(leaky_model(noisy, noisy.population, epochs=60), noisy, Access.LABELS)


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_need_labels_only_and_are_labelled_so(name: str) -> None:
    cls = ATTACKS.get(name)
    assert cls.requires == Access.LABELS and cls.family == "membership"
    from privlab.auditing.plan import LABELS

    assert LABELS[name].endswith("(label-only)")


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_beat_chance_on_a_leaky_model(
    name: str, leaky: Target, noisy: DataBundle
) -> None:
    assert leaky.access == Access.LABELS
    assert _auc(name, leaky, noisy) > 0.6


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_are_near_chance_on_a_model_that_never_saw_the_members(
    name: str, unseen: Target, noisy: DataBundle
) -> None:
    # 120 vs 120: the AUC of random scores has standard deviation 0.037
    assert abs(_auc(name, unseen, noisy) - 0.5) < 0.1


def test_boundary_distance_is_at_least_the_gap_attack(leaky: Target, noisy: DataBundle) -> None:
    """The boundary distance refines the gap attack (0 for every misclassified example): on a
    leaky model its ranking of the correct examples adds signal."""
    assert _auc("boundary_distance", leaky, noisy) > _auc("gap", leaky, noisy)


def _linear_target(num_classes: int, value_range: tuple[float, float]) -> tuple[Target, nn.Linear]:
    torch.manual_seed(0)
    layer = nn.Linear(16, num_classes)
    model = nn.Sequential(nn.Flatten(), layer)
    return Target(
        model, TargetInfo("linear", num_classes, (1, 4, 4), value_range), Access.LABELS
    ), layer


def _closed_form(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor, dual: float) -> torch.Tensor:
    """Distance from x to the nearest input labelled otherwise: the region where some class
    j ≠ y scores at least y is a union of half-spaces, so the distance is the smallest of
    |(w_y − w_j)·x + b_y − b_j| / ‖w_y − w_j‖_* (dual norm: L2 for L2, L1 for L∞)."""
    w, b = layer.weight.detach(), layer.bias.detach()
    margins = (x.flatten(1) @ w.T + b).gather(1, y[:, None]) - (x.flatten(1) @ w.T + b)
    norms = (w[y][:, None, :] - w[None, :, :]).norm(p=dual, dim=2)
    ratio = margins / norms.clamp_min(1e-12)
    return ratio.masked_fill(torch.nn.functional.one_hot(y, w.shape[0]).bool(), np.inf).amin(1)


@pytest.mark.parametrize(("norm", "dual", "slack"), [("l2", 2.0, 1.01), ("linf", 1.0, 1.05)])
def test_boundary_distance_finds_the_closed_form_distance_to_a_hyperplane(
    norm: str, dual: float, slack: float
) -> None:
    # two classes: the boundary is the hyperplane (w_1 − w_0)·x + b_1 − b_0 = 0; a wide value
    # range keeps its nearest point inside the range (no clipping)
    target, layer = _linear_target(2, (-5.0, 5.0))
    x = torch.rand(60, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = target.predict(x)
    attack = ATTACKS.build("boundary_distance", norm=norm, iterations=30, max_queries=20_000)
    found, _ = attack.search(target, x, y)
    ratio = found.double() / _closed_form(layer, x, y, dual).double()
    assert ratio.min() >= 1 - 1e-4  # every point reported was labelled otherwise: never closer
    assert ratio.median() < 1.01 and ratio.max() < slack


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_boundary_distance_of_a_multiclass_linear_classifier_is_never_below_the_truth(
    norm: str, dual: float
) -> None:
    """Four classes: the true distance is the nearest of three half-spaces. The search is
    local (HopSkipJump), so it can settle on a farther class's face, but never inside."""
    target, layer = _linear_target(4, (-5.0, 5.0))
    x = torch.rand(60, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = target.predict(x)
    attack = ATTACKS.build("boundary_distance", norm=norm, iterations=30, max_queries=20_000)
    found, _ = attack.search(target, x, y)
    ratio = found.double() / _closed_form(layer, x, y, dual).double()
    assert ratio.min() >= 1 - 1e-4
    assert ratio.median() < 1.01 and (ratio < 1.05).double().mean() > 0.8


def test_boundary_distance_scores_misclassified_examples_zero_and_keeps_the_budget() -> None:
    target, _ = _linear_target(4, (0.0, 1.0))
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    pred = target.predict(x)
    y = torch.where(torch.arange(40) < 10, (pred + 1) % 4, pred)  # the first ten mislabelled
    attack = ATTACKS.build("boundary_distance", max_queries=400)
    dist, queries = attack.search(target, x, y)
    assert (dist[:10] == 0).all() and (queries[:10] == 1).all()
    assert (dist[10:] > 0).all() and (queries <= 400).all() and (queries[10:] > 100).all()
    scores = attack.score(target, x, y)
    assert scores.dtype == np.float64 and np.array_equal(scores, dist.double().numpy())


def test_boundary_distance_scores_the_whole_value_range_where_nothing_is_labelled_otherwise() -> (
    None
):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # class 0 everywhere
    target = Target(model, TargetInfo("constant", 3, (1, 4, 4)), Access.LABELS)
    x = torch.rand(3, 1, 4, 4)
    scores = ATTACKS.build("boundary_distance", init_trials=3).score(
        target, x, torch.zeros(3).long()
    )
    assert np.allclose(scores, 4.0)  # the diameter of [0, 1]^16


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_are_reproducible_from_their_seed(
    name: str, leaky: Target, noisy: DataBundle
) -> None:
    x, y = noisy.nonmembers.x[:40], noisy.nonmembers.y[:40]
    a = ATTACKS.build(name).score(leaky, x, y)
    torch.manual_seed(123)  # the global generator plays no part
    torch.rand(7)
    b = ATTACKS.build(name).score(leaky, x, y)
    assert np.array_equal(a, b)
    if name == "boundary_distance":  # another seed: other probes, much the same distances
        other = ATTACKS.build(name, seed=1).score(leaky, x, y)
        assert not np.array_equal(a, other) and np.corrcoef(a, other)[0, 1] > 0.9


@pytest.mark.parametrize("name", LABEL_ONLY)
def test_label_only_attacks_refuse_no_batch_they_can_score(
    name: str, leaky: Target, noisy: DataBundle
) -> None:
    attack = ATTACKS.build(name, batch_size=7)
    assert attack.score(leaky, noisy.members.x[:0], noisy.members.y[:0]).shape == (0,)
    one = attack.score(leaky, noisy.members.x[:1], noisy.members.y[:1])
    assert one.shape == (1,) and np.isfinite(one).all()
    wrong = (leaky.predict(noisy.members.x[:9]) + 1) % noisy.num_classes
    mislabelled = attack.score(leaky, noisy.members.x[:9], wrong)
    assert np.all(mislabelled == 0) if name != "augmentation_labels" else np.all(mislabelled < 1)
    richer = small_target(leaky._model, noisy, Access.LABELS | Access.PROBS | Access.WEIGHTS)
    assert np.array_equal(
        attack.score(richer, noisy.members.x[:9], noisy.members.y[:9]),
        attack.score(leaky, noisy.members.x[:9], noisy.members.y[:9]),
    )
    with pytest.raises(AccessDenied, match="needs access"):
        attack.score(
            small_target(leaky._model, noisy, Access.NONE), noisy.members.x, noisy.members.y
        )


def test_translations_move_the_image_and_fill_the_border() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert translations(1)[0] == (0, 0) and len(translations(1)) == 9 and len(translations(2)) == 25
    down = translate(x, 1, 0, "constant", -1.0)
    assert torch.equal(down[0, 0, 1:], x[0, 0, :3]) and (down[0, 0, 0] == -1).all()
    left = translate(x, 0, -2, "replicate", 0.0)
    assert torch.equal(left[0, 0, :, :2], x[0, 0, :, 2:])
    assert torch.equal(left[0, 0, :, 2:], x[0, 0, :, 3:].expand(4, 2))
    assert torch.equal(translate(x, 0, 0, "reflect", 0.0), x)


def test_augmentation_counts_the_correct_copies(leaky: Target, noisy: DataBundle) -> None:
    x, y = noisy.members.x[:20], noisy.members.y[:20]
    translated = ATTACKS.build("augmentation_labels", augment="translate", shift=1, flip=True)
    scores = translated.score(leaky, x, y)
    assert np.allclose(scores * 18, np.round(scores * 18))  # 9 translations, each mirrored
    unit = ATTACKS.build("augmentation_labels", augment="translate", shift=0).score(leaky, x, y)
    assert np.array_equal(unit, ATTACKS.build("gap").score(leaky, x, y))  # the identity alone


def test_augmentation_adds_noise_to_inputs_that_are_not_images(noisy: DataBundle) -> None:
    """Flat (tabular-like) inputs get Gaussian noise; larger noise flips more labels."""
    model = leaky_model(noisy, noisy.members, epochs=60)
    flat = Target(model, TargetInfo("flat", noisy.num_classes, (64,)), Access.LABELS)
    x, y = noisy.members.x.flatten(1), noisy.members.y
    attack = ATTACKS.build("augmentation_labels", noise_scales=(0.05,), noise_draws=20)
    assert attack.mode((64,)) == "noise" and attack.mode((1, 8, 8)) == "both"
    small = attack.score(flat, x, y)
    assert np.allclose(small * 21, np.round(small * 21))
    large = ATTACKS.build("augmentation_labels", noise_scales=(2.0,), noise_draws=20)
    assert large.score(flat, x, y).mean() < small.mean()
    with pytest.raises(ValueError, match="C×H×W"):
        ATTACKS.build("augmentation_labels", augment="translate").score(flat, x, y)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("boundary_distance", {"norm": "l1"}),
        ("boundary_distance", {"init_evals": 0}),
        ("augmentation_labels", {"augment": "rotate"}),
        ("augmentation_labels", {"noise_scales": ()}),
    ],
)
def test_bad_parameters_are_refused_when_built(name: str, params: dict) -> None:
    with pytest.raises(ValueError):
        ATTACKS.build(name, **params)
