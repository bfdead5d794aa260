"""Model-inversion defences as training regimes: MID, Trap-MID, the drop layer and TL-DMI."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from privlab.config import Component
from privlab.data.bundle import Split
from privlab.registry import MODELS, REGIMES
from privlab.run.model_cache import build_regime
from privlab.run.weights import load_state, save_model
from privlab.training.loop import TrainSpec, train
from privlab.training.regimes.drop_layer import PixelMask, pixel_mask
from privlab.training.regimes.mid import VIBHead, vib_head
from privlab.training.regimes.trap_mid import random_affine


def _mlp(bundle, hidden=(32,), seed=0):
    torch.manual_seed(seed)
    return MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=hidden
    )


def _accuracy(model, split):
    with torch.no_grad():
        return float((model(split.x).argmax(1) == split.y).float().mean())


# --- MID ------------------------------------------------------------------------------------


def test_mid_replaces_the_logit_layer_with_a_vib_head_idempotently(tiny):
    regime = REGIMES.build("mid")
    model = regime.adapt_model(_mlp(tiny))
    assert isinstance(model, torch.nn.Sequential) and isinstance(model[-1], VIBHead)
    head = model[-1]
    assert head.k == 16 and head.st_layer.out_features == 32 and head.classifier.in_features == 16
    assert model(tiny.members.x[:5]).shape == (5, tiny.num_classes)
    before = [p.clone() for p in model.parameters()]
    again = regime.adapt_model(model)
    assert again is model and sum(isinstance(m, VIBHead) for m in model.modules()) == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_mid_kl_term_and_loss_match_an_independent_computation(tiny):
    regime = REGIMES.build("mid", beta=0.5)
    model = regime.adapt_model(_mlp(tiny)).train()
    x, y = tiny.members.x[:16], tiny.members.y[:16]
    torch.manual_seed(7)
    loss = regime.loss(model, x, y)
    head = vib_head(model)
    assert head is not None and head.last_info_loss is None  # consumed by the loss
    features = model[:-1](x)
    mu, std = head.statistics(features)
    assert torch.allclose(std, F.softplus(head.st_layer(features)[:, 16:] - 5))
    kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum()
    model(x)
    assert head.last_info_loss is not None and torch.allclose(head.last_info_loss, kl, rtol=1e-5)
    torch.manual_seed(7)
    expected = F.cross_entropy(model(x), y, reduction="sum") + 0.5 * kl
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_mid_samples_at_evaluation_only_when_asked(tiny):
    x = tiny.members.x[:8]
    stochastic = REGIMES.build("mid").adapt_model(_mlp(tiny)).eval()
    with torch.no_grad():
        assert not torch.equal(stochastic(x), stochastic(x))
    plain = REGIMES.build("mid", sample_at_eval=False).adapt_model(_mlp(tiny)).eval()
    head = plain[-1]
    with torch.no_grad():
        out = plain(x)
        assert torch.equal(out, plain(x))
        assert torch.allclose(out, head.classifier(head.statistics(plain[:-1](x))[0]))


def test_mid_trains_and_round_trips_through_the_model_file(tiny, tmp_path):
    regime = REGIMES.build("mid", sample_at_eval=False)
    result = train(
        _mlp(tiny), tiny.members, regime, TrainSpec(epochs=5, batch_size=32, lr=5e-3), seed=0
    )
    assert _accuracy(result.model, tiny.nonmembers) > 0.5
    save_model(result.model, tmp_path / "mid.safetensors", {})
    fresh = load_state(regime.adapt_model(_mlp(tiny, seed=1)), tmp_path / "mid.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh.eval()(tiny.nonmembers.x), result.model(tiny.nonmembers.x))


# --- Trap-MID -------------------------------------------------------------------------------


def test_random_affine_is_identity_when_off_and_differentiable():
    x = torch.rand(6, 1, 8, 8, requires_grad=True)
    assert torch.allclose(random_affine(x, p=0.0), x, atol=1e-6)
    torch.manual_seed(0)
    out = random_affine(x, p=1.0, flip=True)
    assert out.shape == x.shape and not torch.allclose(out, x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    flat = torch.rand(4, 10)
    assert random_affine(flat) is flat


def test_trap_mid_learns_trapdoors_with_bounded_triggers(tiny):
    # stronger blending than the paper's α = 0.02 (64×64 faces, long training) so that an MLP
    # on 8×8 noisy prototypes learns the trapdoors within a few seconds
    regime = REGIMES.build("trap_mid", alpha=0.4)
    spec = TrainSpec(epochs=10, batch_size=32, lr=1e-2)
    result = train(_mlp(tiny, hidden=(64,)), tiny.members, regime, spec, seed=0)
    triggers = regime._state["triggers"]
    assert triggers.shape == (tiny.num_classes, *tiny.input_shape)
    assert triggers.min() >= 0 and triggers.max() <= 1
    assert "disc" not in regime._state and isinstance(result.model, torch.nn.Sequential)
    x, y = tiny.nonmembers.x, tiny.nonmembers.y
    t = torch.randint(0, tiny.num_classes, y.shape, generator=torch.Generator().manual_seed(1))
    other, shifted = t != y, (t + 1) % tiny.num_classes
    with torch.no_grad():
        trapped = (result.model(regime.blend(x, t)).argmax(1) == t)[other].float().mean()
        wrong_trigger = (
            (result.model(regime.blend(x, shifted)).argmax(1) == t)[other].float().mean()
        )
    assert trapped > 0.6 and wrong_trigger < 0.2  # chance is 1/4: class t's trigger does it
    assert _accuracy(result.model, tiny.nonmembers) > 0.6  # the task is still learnt
    assert 0 < result.summary["trapdoor_success_last_epoch"] <= 1


def test_trap_mid_optimises_triggers_only_when_asked(tiny):
    spec = TrainSpec(epochs=1, batch_size=32)
    fixed = REGIMES.build("trap_mid", optimized=False)
    train(_mlp(tiny), tiny.members, fixed, spec, seed=0)
    learned = REGIMES.build("trap_mid")
    train(_mlp(tiny), tiny.members, learned, spec, seed=0)
    torch.manual_seed(0)  # the loop seeds torch, then prepare draws the triggers first
    init = torch.rand(tiny.num_classes, *tiny.input_shape)
    assert torch.equal(fixed._state["triggers"], init)
    assert not torch.equal(learned._state["triggers"], init)


# --- drop layer -----------------------------------------------------------------------------


def _drop(tiny, **params):
    regime = build_regime(Component(name="drop_layer", params=params), tiny)
    spec = TrainSpec(epochs=8, batch_size=32, lr=0.02)
    return regime, train(_mlp(tiny), tiny.members, regime, spec, seed=0)


def test_build_regime_gives_the_drop_layer_its_input_shape(tiny):
    assert build_regime(Component(name="drop_layer"), tiny).input_shape == tiny.input_shape
    with pytest.raises(ValueError, match="input_shape"):
        REGIMES.build("drop_layer").adapt_model(_mlp(tiny))
    regime = REGIMES.build("drop_layer", input_shape=[1, 8, 8])
    model = regime.adapt_model(_mlp(tiny))
    assert isinstance(model, torch.nn.Sequential) and isinstance(model[0], PixelMask)
    assert regime.adapt_model(model) is model
    assert pixel_mask(model) is not None and pixel_mask(model).all()
    assert pixel_mask(_mlp(tiny)) is None


def test_drop_layer_drops_pixels_for_good_and_they_cannot_matter(tiny):
    regime, result = _drop(tiny, lam=5.0, threshold=0.02)
    kept = pixel_mask(result.model)
    assert kept is not None and kept.shape == tiny.input_shape[1:]
    assert result.summary["pixels_kept"] == int(kept.sum()) < 0.25 * kept.numel()
    assert result.summary["pixels_kept_fraction"] == pytest.approx(kept.float().mean().item())
    mask = result.model[0]
    assert torch.all(mask.weight[:, ~kept] == 0)  # exactly zero
    x = tiny.nonmembers.x
    changed = torch.where(~kept, torch.rand_like(x) * 100 - 50, x)
    with torch.no_grad():
        assert torch.equal(result.model(changed), result.model(x))  # bit-identical
    mask.weight.data.fill_(1.0)  # even regrown weights cannot revive a dropped pixel
    mask.drop(0.0)
    assert torch.equal(pixel_mask(result.model), kept)


def test_drop_layer_without_penalty_keeps_every_pixel(tiny):
    _, result = _drop(tiny, lam=0.0)
    assert result.summary["pixels_kept"] == 64 and result.summary["pixels_kept_fraction"] == 1.0
    assert _accuracy(result.model, tiny.nonmembers) > 0.6


def test_drop_layer_threshold_schedule():
    regime = REGIMES.build("drop_layer", threshold_epoch=10)
    regime.start_epoch(1, 4)
    assert regime._state["threshold"] == regime.early_threshold
    regime.start_epoch(2, 4)  # min(10, 4 // 2): short runs threshold too
    assert regime._state["threshold"] == regime.threshold


# --- TL-DMI ---------------------------------------------------------------------------------


def _tl(tiny, public, hidden=(32, 32), **params):
    regime = dataclasses.replace(REGIMES.build("tl_dmi", **params), _public=public)
    init = {k: v.clone() for k, v in _mlp(tiny, hidden).state_dict().items()}
    spec = TrainSpec(epochs=4, batch_size=32, lr=1e-2)
    return regime, init, train(_mlp(tiny, hidden), tiny.members, regime, spec, seed=0)


def test_tl_dmi_freezes_the_pretrained_first_layer(tiny):
    regime, init, result = _tl(tiny, tiny.population)
    pre, trained = regime._state["pretrained"], result.model.state_dict()
    assert "5.weight" not in pre  # the logit layer starts fresh
    for key in ("1.weight", "1.bias"):  # frozen: pre-trained, then untouched
        assert not torch.equal(pre[key], init[key]) and torch.equal(trained[key], pre[key])
    assert not torch.equal(trained["3.weight"], pre["3.weight"])  # fine-tuned
    assert all(p.requires_grad for p in result.model.parameters())  # plain module again
    assert result.summary["frozen_layers"] == 1 and result.summary["pretrain_accuracy"] > 0.6
    assert _accuracy(result.model, tiny.nonmembers) > 0.6


def test_tl_dmi_rebuilds_the_optimizer_over_trainable_parameters(tiny):
    regime = dataclasses.replace(REGIMES.build("tl_dmi", freeze_layers=0), _public=tiny.population)
    model = _mlp(tiny, hidden=(32, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tiny.members.x), 32)
    model, new, _ = regime.prepare(model, optimizer, loader, epochs=1)
    assert type(new) is torch.optim.Adam and new.defaults["lr"] == 0.005
    params = [p for group in new.param_groups for p in group["params"]]
    assert {id(p) for p in params} == {id(p) for p in model[5].parameters()}  # only the head


def test_tl_dmi_pretrains_on_other_classes_and_needs_public_data(tiny):
    pop = tiny.population
    keep = pop.y < 2
    public = Split(pop.x[keep], pop.y[keep] * 5 + 7)  # two foreign classes: 7 and 12
    _, _, result = _tl(tiny, public)
    assert result.summary["pretrain_accuracy"] > 0.6
    with pytest.raises(ValueError, match="tl_dmi pre-trains on public data"):
        train(_mlp(tiny), tiny.members, REGIMES.build("tl_dmi"), TrainSpec(epochs=1))
