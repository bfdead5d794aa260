"""Gradient-inversion attacks: iDLG labels, the analytic FC attack, DLG, Inverting Gradients."""

import dataclasses

import pytest
import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import (
    gradient_matching_loss,
    idlg_labels,
    random_images,
    server_target,
    total_variation,
)
from privlab.federated import GradientObservation, client_update
from privlab.metrics.image_quality import match_reconstructions
from privlab.registry import ATTACKS, MODELS
from privlab.threat_model import Access, AccessDenied, TargetInfo

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)


def _target(model, **kw):
    """The server's view of ``model``: its weights and the clients' updates, 8×8 digits."""
    return server_target(model, input_shape=SHAPE, num_classes=10, **kw)


def _mlp(seed=0, bias=True, act=nn.ReLU):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), act(), nn.Linear(32, 10, bias=bias))


def _cnn(seed=0, channels=(16, 32), fc=64):
    torch.manual_seed(seed)
    return MODELS.build("cnn_small", input_shape=SHAPE, num_classes=10, channels=channels, fc=fc)


def _distinct_batch(digits, n):
    """The first n members with n different labels."""
    seen, rows = set(), []
    for i, c in enumerate(digits.members.y.tolist()):
        if c not in seen:
            seen.add(c)
            rows.append(i)
        if len(rows) == n:
            break
    return digits.members.x[rows], digits.members.y[rows]


def _add_noise(obs: GradientObservation, scale: float, seed: int = 0) -> GradientObservation:
    """Gaussian defence: every entry + N(0, (scale·‖G‖)²)."""
    gen = torch.Generator().manual_seed(seed)
    std = scale * obs.norm()
    return obs.with_gradients(
        {n: g + std * torch.randn(g.shape, generator=gen) for n, g in obs.gradients.items()}
    )


def _prune(obs: GradientObservation, fraction: float) -> GradientObservation:
    """Pruning defence: zero all but the largest-magnitude (1 − fraction) of the entries."""
    flat = torch.cat([g.abs().flatten() for g in obs.gradients.values()])
    keep = max(1, round((1 - fraction) * flat.numel()))
    threshold = flat.topk(keep).values.min()
    return obs.with_gradients(
        {n: torch.where(g.abs() >= threshold, g, 0.0) for n, g in obs.gradients.items()}
    )


def test_the_attacks_are_registered_as_gradient_inversion():
    for name in ("dlg", "inverting_gradients", "analytic_fc"):
        cls = ATTACKS.get(name)
        assert cls.family == "gradient_inversion"
        assert cls.needs_reference is False and cls.needs_reference_models is False
        assert isinstance(ATTACKS.build(name).params(), dict)
    # optimisation attacks simulate updates on the weights; the analytic one reads only the
    # update (and the architecture)
    assert ATTACKS.get("dlg").requires == Access.PARAM_GRADIENTS | Access.WEIGHTS
    assert ATTACKS.get("inverting_gradients").requires == Access.PARAM_GRADIENTS | Access.WEIGHTS
    assert ATTACKS.get("analytic_fc").requires == Access.PARAM_GRADIENTS


# --------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("make", [_mlp, _cnn, lambda seed: _mlp(seed, bias=False)])
def test_idlg_recovers_the_label_of_one_example_exactly(digits, make):
    """With no bias, the last layer's input is a ReLU output (≥ 0): the row-sum rule."""
    hits = 0
    for seed in range(4):
        model = make(seed)
        for i in range(10):
            x, y = digits.members.x[i : i + 1], digits.members.y[i : i + 1]
            got = idlg_labels(client_update(model, x, y), model)
            hits += int(got.tolist() == y.tolist())
    assert hits == 40


def test_idlg_recovers_a_batchs_labels_at_initialisation(digits):
    model = _mlp()
    x, y = _distinct_batch(digits, 4)
    assert idlg_labels(client_update(model, x, y), model).tolist() == sorted(y.tolist())
    # repeated labels: counts estimated from the magnitudes
    labels = digits.members.y.tolist()
    threes = [i for i, c in enumerate(labels) if c == 3][:3]
    rows = [*threes, labels.index(7)]
    obs = client_update(model, digits.members.x[rows], digits.members.y[rows])
    assert idlg_labels(obs, model).tolist() == [3, 3, 3, 7]


# ------------------------------------------------------------------------------ access

GI_ATTACKS = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "gradient_inversion"]
FAST = {"dlg": {"steps": 1, "max_iter": 2}, "analytic_fc": {}}


def _fast(name):
    return ATTACKS.build(name, **FAST.get(name, {"iterations": 2, "restarts": 1}))


@pytest.mark.parametrize("name", GI_ATTACKS)
def test_a_target_without_the_update_is_refused(digits, name):
    model = _mlp()
    obs = client_update(model, digits.members.x[:1], digits.members.y[:1])
    with pytest.raises(AccessDenied, match=r"needs access \['param_gradients'\]"):
        _fast(name).invert(_target(model, access=Access.WEIGHTS | Access.PROBS), obs)


@pytest.mark.parametrize("name", GI_ATTACKS)
def test_only_the_analytic_attack_runs_without_the_weights(digits, name):
    """PARAM_GRADIENTS alone: the optimisation attacks (which simulate updates on the weights)
    are refused naming WEIGHTS; the analytic one reads the update and the architecture only."""
    model = _mlp()
    x, y = digits.members.x[:1], digits.members.y[:1]
    updates_only = _target(model, access=Access.PARAM_GRADIENTS)
    attack = _fast(name)
    if Access.WEIGHTS in attack.requires:
        with pytest.raises(AccessDenied, match=r"needs access \['weights'\]"):
            attack.invert(updates_only, client_update(model, x, y))
    else:
        result = attack.invert(updates_only, client_update(model, x, y))
        assert float((result.images - x).pow(2).mean()) < 1e-8


@pytest.mark.parametrize("name", GI_ATTACKS)
def test_the_target_and_the_callers_model_are_left_alone(digits, name):
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = _target(model)
    obs = client_update(model, *_distinct_batch(digits, 2))
    _fast(name).invert(target, obs)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    inner = target.module_for_simulation()
    assert all(torch.equal(before[k], v) for k, v in inner.state_dict().items())
    assert not any(m._forward_pre_hooks for m in inner.modules())


def test_shape_classes_and_value_range_come_from_the_target(digits):
    model = _mlp()
    x, y = digits.members.x[:1], digits.members.y[:1]
    obs = client_update(model, x, y)
    wide = _target(model, value_range=(-1.0, 2.0))
    result = ATTACKS.build("inverting_gradients", iterations=3, restarts=1).invert(wide, obs)
    assert result.images.shape == (1, *SHAPE)
    with pytest.raises(ValueError, match="num_classes must be ≥ 2"):
        _fast("dlg").invert(server_target(model, input_shape=SHAPE, num_classes=1), obs)
    known = dataclasses.replace(obs, labels_known=True, labels=torch.tensor([7]))
    with pytest.raises(ValueError, match=r"known labels \[7\] are outside 0..4"):
        _fast("dlg").invert(server_target(model, input_shape=SHAPE, num_classes=5), known)
    assert isinstance(wide.info, TargetInfo) and wide.info.value_range == (-1.0, 2.0)


# ------------------------------------------------------------------------------ analytic


def test_analytic_fc_recovers_one_input_exactly(digits):
    attack = ATTACKS.build("analytic_fc")
    for seed, i in [(0, 0), (1, 5), (2, 11)]:
        model = _mlp(seed)
        x, y = digits.members.x[i : i + 1], digits.members.y[i : i + 1]
        result = attack.invert(_target(model), client_update(model, x, y))
        assert result.images.shape == (1, *SHAPE)
        assert float((result.images - x).pow(2).mean()) < 1e-8
        assert result.labels.tolist() == y.tolist()


def test_analytic_fc_returns_a_mix_for_a_batch(digits):
    model = _mlp()
    x, y = _distinct_batch(digits, 4)
    result = ATTACKS.build("analytic_fc").invert(_target(model), client_update(model, x, y))
    assert len(result.images) == 1
    assert float((result.images - x).pow(2).flatten(1).mean(1).min()) > 1e-4  # no exact copy


def test_analytic_fc_needs_a_first_linear_layer_with_bias(digits):
    x, y = digits.members.x[:1], digits.members.y[:1]
    for model, what in [
        (_cnn(), "'0.0' is Conv2d"),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False)),
            "nn.Linear without a bias",
        ),
    ]:
        with pytest.raises(ValueError, match=f"first parametrised layer is nn.Linear.*{what}"):
            ATTACKS.build("analytic_fc").invert(_target(model), client_update(model, x, y))


# ---------------------------------------------------------------------------------- losses


def test_matching_losses_and_tv():
    a = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    assert float(gradient_matching_loss(a, a, "l2")) == 0.0
    assert abs(float(gradient_matching_loss(a, a, "cosine"))) < 1e-6
    scaled = [2 * t for t in a]
    assert abs(float(gradient_matching_loss(scaled, a, "cosine"))) < 1e-6  # scale-free
    assert float(gradient_matching_loss(scaled, a, "l2")) == pytest.approx(14.0)
    flipped = [-t for t in a]
    assert float(gradient_matching_loss(flipped, a, "cosine")) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown matching loss"):
        gradient_matching_loss(a, a, "l1")  # type: ignore[arg-type]
    assert float(total_variation(torch.ones(2, 1, 4, 4))) == 0.0
    stripes = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).repeat(4, 1)[None, None]
    assert float(total_variation(stripes)) == pytest.approx(1.0)  # all horizontal steps are 1


# ------------------------------------------------------------------------------------- DLG


@pytest.mark.parametrize(
    ("label_recovery", "act"), [(True, nn.ReLU), (False, nn.Sigmoid)], ids=["idlg", "dlg"]
)
def test_dlg_reconstructs_one_digit(digits, label_recovery, act):
    """iDLG labels on a ReLU MLP, and the original joint soft-label fit on a sigmoid MLP."""
    model = _mlp(3, act=act)
    x, y = digits.members.x[7:8], digits.members.y[7:8]
    obs = client_update(model, x, y)
    result = ATTACKS.build("dlg", label_recovery=label_recovery).invert(_target(model), obs)
    m = match_reconstructions(result.images, x, recon_labels=result.labels, true_labels=y)
    baseline = match_reconstructions(
        random_images(1, SHAPE, (0, 1), torch.Generator().manual_seed(1)), x
    )
    assert float(m.psnr[0]) > 40 and float(baseline.psnr[0]) < 10
    assert m.label_accuracy == 1.0
    assert result.history and result.matching_loss < 1e-8


# ---------------------------------------------------------------------- Inverting Gradients


@pytest.fixture(scope="module")
def ig_setting(digits):
    """A small CNN at initialisation, a batch of 4 digits, the clean observation, and the
    reconstruction of a uniform-noise guess (the chance level)."""
    model = _cnn()
    x, y = _distinct_batch(digits, 4)
    obs = client_update(model, x, y)
    noise = random_images(4, SHAPE, (0, 1), torch.Generator().manual_seed(1))
    chance = float(match_reconstructions(noise, x).psnr.mean())
    return model, x, y, obs, chance


def _ig_psnr(model, obs, x, y, **params):
    attack = ATTACKS.build("inverting_gradients", iterations=300, restarts=1, **params)
    result = attack.invert(_target(model), obs)
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert len(result.history) == 300
    return match_reconstructions(result.images, x, recon_labels=result.labels, true_labels=y)


def test_inverting_gradients_beats_chance_on_a_batch(digits, ig_setting):
    model, x, y, obs, chance = ig_setting
    m = _ig_psnr(model, obs, x, y)
    mean_image = digits.population.x.mean(0, keepdim=True).repeat(4, 1, 1, 1)
    typical = float(match_reconstructions(mean_image, x).psnr.mean())
    assert float(m.psnr.mean()) > chance + 10  # ~20 dB against ~6 dB
    assert float(m.psnr.mean()) > typical + 5  # and well above the average digit (~12 dB)
    assert float(m.ssim.mean()) > 0.8
    assert m.label_set_accuracy == 1.0


@pytest.mark.parametrize(
    "defend",
    [lambda o: _add_noise(o, 1.0), lambda o: _prune(o, 0.999)],
    ids=["gaussian_noise_std_norm", "prune_99.9%"],
)
def test_a_strong_defence_leaves_inverting_gradients_at_chance(ig_setting, defend):
    model, x, y, obs, chance = ig_setting
    clean = float(_ig_psnr(model, obs, x, y).psnr.mean())
    defended = float(_ig_psnr(model, defend(obs), x, y).psnr.mean())
    assert defended < chance + 3
    assert clean - defended > 10


def test_inverting_gradients_is_deterministic_and_uses_known_labels(ig_setting):
    model, x, y, obs, _ = ig_setting
    known = dataclasses.replace(obs, labels_known=True, labels=torch.tensor([9, 9, 9, 9]))
    attack = ATTACKS.build("inverting_gradients", iterations=5, restarts=2)
    a = attack.invert(_target(model), known, seed=3)
    b = attack.invert(_target(model), known, seed=3)
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [9, 9, 9, 9]
    assert attack.milestones() == [2, 3, 4]
