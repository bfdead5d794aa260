"""The weak adversary end to end on a small problem: shadow heads → reconstructor → TPR ≫ FPR."""

import pytest
import torch

from privlab.attacks.reconstruction.evaluation import evaluate_reconstructor
from privlab.attacks.reconstruction.shadow_shards import ShadowHeads, shard_weights
from privlab.attacks.reconstruction.weak_adversary import (
    WeakAdversary,
    fit_normaliser,
)
from privlab.metrics.reconstruction import nn_mse_threshold
from privlab.registry import ATTACKS
from privlab.studies.reconstruction.shadow_heads import (
    ShadowJob,
    generate_shadow_heads,
    shadow_heads,
)
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo
from privlab.training.heads import HeadSpec, build_head


def _pool(seed, n=400, classes=4, side=6):
    """Images: a class prototype plus a per-image 'style'; features: a fixed random projection."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, 1, side, side, generator=torch.Generator().manual_seed(99)) * 2 - 1
    labels = torch.arange(n) % classes
    images = (protos[labels] + 0.6 * torch.randn(n, 1, side, side, generator=gen)).clamp(-1, 1)
    proj = torch.randn(side * side, 24, generator=torch.Generator().manual_seed(7))
    return images, labels, (images.flatten(1) @ proj).relu()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("weak")
    spec = HeadSpec(outputs=4, sigma_init=0.002, lr=0.05, epochs=30)
    pools = {name: _pool(seed) for name, seed in (("train", 0), ("val", 1))}
    jobs = {
        name: ShadowJob(spec=spec, n=4, count=count, shard_size=1000, seed=i, pool_sha256=name)
        for i, (name, count) in enumerate((("train", 3000), ("val", 200)))
    }
    for name, (_, labels, feats) in pools.items():
        generate_shadow_heads(jobs[name], feats, labels, root / name)
    heads = {name: shadow_heads(job, root / name) for name, job in jobs.items()}
    attack = ATTACKS.build(
        "weak_adversary", kind="mlp", width=128, lr=3e-3, epochs=12, eval_every=200
    )
    ti, vi = pools["train"][0], pools["val"][0]
    recon = attack.fit(heads["train"], heads["val"], ti, vi, seed=0)
    return recon, jobs, heads, pools


def test_reconstructions_are_closer_to_the_training_set_than_null_weights_give(trained):
    recon, _, heads, pools = trained
    vi, vl, _ = pools["val"]
    tau = nn_mse_threshold(pools["train"][0], vi)
    full = fit_normaliser(heads["train"], covariance=True)
    result = evaluate_reconstructor(recon, heads["val"], vi, vl, tau=tau, null=full)
    assert len(result["min_mse"]["trained_on"]) == 200 * 4
    assert result["tpr"] > result["fpr"] + 0.15
    assert result["tpr_at_fpr_0.01"] > 0.05  # five times the rate of a blind guess
    # other heads' training sets and random draws from the prior are matched less often
    assert result["held_out"]["fpr"] < result["tpr"] - 0.1
    assert result["prior_draw_tpr"] < result["tpr"]
    assert min(h["val"] for h in recon.history) < recon.history[0]["val"]  # it learned


def test_reconstructions_depend_on_the_weights(trained):
    recon, *_ = trained
    theta = torch.randn(2, int(recon.normaliser.mean.numel()))
    a = recon(theta, torch.tensor([0, 0]))
    assert not torch.allclose(a[0], a[1])


def test_one_vs_rest_binary_heads_leak_their_positive_identity(tmp_path):
    """The CelebA-like variant: binary FC(4)→FC(1) heads on 1 image of one identity and 9 of
    others (positives up-weighted ×10); the reconstructor recovers the positive image."""
    spec = HeadSpec(
        outputs=1, hidden=4, sigma_init=0.02, lr=0.05, weight_decay=0.0, epochs=60, pos_weight=10.0
    )
    pools = {}
    for name, seed in (("train", 0), ("val", 1)):
        images, ids, feats = _pool(seed, n=400, classes=40)
        pools[name] = (images, ids, feats)
    jobs = {
        name: ShadowJob(
            spec=spec,
            n=10,
            count=count,
            shard_size=1000,
            seed=i,
            pool_sha256=name,
            task="one_vs_rest",
        )
        for i, (name, count) in enumerate((("train", 3000), ("val", 200)))
    }
    for name, (_, ids, feats) in pools.items():
        generate_shadow_heads(jobs[name], feats, ids, tmp_path / name)
    heads = {name: shadow_heads(job, tmp_path / name) for name, job in jobs.items()}
    attack = WeakAdversary(kind="mlp", width=128, lr=3e-3, epochs=8, eval_every=200)
    (ti, _, _), (vi, vl, _) = pools["train"], pools["val"]
    recon = attack.fit(heads["train"], heads["val"], ti, vi)
    assert recon.targets == [1]
    tau = nn_mse_threshold(ti, vi)
    result = evaluate_reconstructor(recon, heads["val"], vi, vl, tau=tau)
    assert len(result["min_mse"]["trained_on"]) == 200  # one positive per head
    # measured: TPR 0.20, FPR 0.005, random draw 0.0
    assert result["tpr"] > 0.1 and result["tpr"] > 4 * result["fpr"] + 0.02
    assert result["tpr"] > result["prior_draw_tpr"] + 0.1


def test_unconditional_reconstructor_ignores_the_class(trained, tmp_path):
    _, jobs, heads, pools = trained
    attack = WeakAdversary(
        kind="residual", width=8, blocks=1, conditional=False, epochs=1, eval_every=50
    )
    ti, vi = pools["train"][0], pools["val"][0]
    small = ShadowJob(**{**jobs["train"].__dict__, "count": 200, "shard_size": 200})
    generate_shadow_heads(small, pools["train"][2], pools["train"][1], tmp_path / "s")
    recon = attack.fit(shadow_heads(small, tmp_path / "s"), heads["val"], ti, vi)
    assert not recon.conditional
    theta = torch.randn(3, int(recon.normaliser.mean.numel()))
    a, b = recon(theta, torch.tensor([0, 1, 2])), recon(theta, torch.tensor([3, 3, 3]))
    assert torch.equal(a, b) and a.shape == (3, 1, 6, 6)


def test_registered_with_its_hyperparameters_and_refuses_bad_ones():
    attack = ATTACKS.build("weak_adversary")
    assert isinstance(attack, WeakAdversary) and attack.family == "reconstruction"
    assert attack.requires == Access.WEIGHTS
    assert attack.params()["kind"] == "mlp" and attack.params()["alpha"] == 100.0
    with pytest.raises(ValueError, match="unknown reconstructor kind"):
        WeakAdversary(kind="gan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad \\['epochs'\\]"):
        WeakAdversary(epochs=0)
    with pytest.raises(ValueError, match="bad \\['lr'\\]"):
        WeakAdversary(lr=0.0)


def test_a_released_head_is_read_through_its_target(trained):
    """reconstruct(target) flattens the released head's weights as the shards are flattened:
    a head rebuilt as a module from the first validation shard gives what θ_0 gives."""
    recon, jobs, heads, _ = trained
    shard = next(iter(heads["val"]))
    head = build_head(jobs["val"].spec, 24)
    head.load_state_dict({k[6:]: v[0] for k, v in shard.items() if k.startswith("param.")})
    info = TargetInfo("released head", 4, (24,))
    attack = WeakAdversary()
    images = attack.reconstruct(recon, Target(head, info, Access.WEIGHTS))
    theta = shard_weights(shard)[:1].expand(4, -1)
    assert torch.equal(images, recon(theta, torch.arange(4)))
    assert attack.reconstruct(recon, Target(head, info, Access.WEIGHTS), [2]).shape == (1, 1, 6, 6)
    with pytest.raises(AccessDenied, match=r"needs access \['weights'\]"):
        attack.reconstruct(recon, Target(head, info, Access.PROBS | Access.LOGITS))


def test_shadow_heads_are_described_consistently():
    def empty():
        return iter(())

    heads = ShadowHeads(classes=4, target_classes=(0, 3), read=empty)
    assert list(heads) == [] and heads.task == "balanced"
    with pytest.raises(ValueError, match="outside 0..3"):
        ShadowHeads(classes=4, target_classes=(4,), read=empty)


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_same_reconstructor(
    trained, tmp_path, monkeypatch
):
    from privlab.run.store import FileCheckpoint

    _, _, heads, pools = trained
    ti, vi = pools["train"][0], pools["val"][0]
    attack = ATTACKS.build(
        "weak_adversary", kind="residual", width=4, blocks=1, lr=3e-3, epochs=1, eval_every=25
    )
    told: list[int] = []  # the progress callback: training steps done, at every check
    whole = attack.fit(heads["train"], heads["val"], ti, vi, seed=3, on_steps=told.append)
    last = int(whole.history[-1]["step"])
    assert "train" not in whole.history[-1]  # no early stop: the fit took all its steps
    assert last == attack.steps([len(shard["indices"]) for shard in heads["train"]])
    assert told[0] == 0 and set(told[1:]) == {25} and sum(told) == last // 25 * 25

    checks = {"n": 0}
    val_loss = WeakAdversary._val_loss

    def dies_on_the_third_check(self, *args, **kwargs):
        checks["n"] += 1
        if checks["n"] == 3:
            raise KeyboardInterrupt
        return val_loss(self, *args, **kwargs)

    ckpt = FileCheckpoint(tmp_path / "fit.safetensors", {"fit": 1})
    monkeypatch.setattr(WeakAdversary, "_val_loss", dies_on_the_third_check)
    with pytest.raises(KeyboardInterrupt):
        attack.fit(heads["train"], heads["val"], ti, vi, seed=3, checkpoint=ckpt)
    monkeypatch.undo()
    saved = ckpt.load()
    assert saved is not None and saved["step"] == 50  # two checks were saved
    told.clear()
    resumed = attack.fit(
        heads["train"], heads["val"], ti, vi, seed=3, checkpoint=ckpt, on_steps=told.append
    )
    assert told[0] == 50 and sum(told) == last // 25 * 25  # the resumed steps count at once
    assert resumed.history == whole.history
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    # a checkpoint of another computation is not used
    with pytest.warns(UserWarning, match="another computation"):
        assert FileCheckpoint(tmp_path / "fit.safetensors", {"fit": 2}).load() is None


def test_mixed_precision_fits_as_well_as_float32(trained):
    """bfloat16 forward passes, float32 weights: the fit differs (autocast is on) but learns
    as much, and its reconstructions are as specific to the heads' training sets."""
    recon, _, heads, pools = trained
    (ti, _, _), (vi, vl, _) = pools["train"], pools["val"]
    attack = ATTACKS.build(
        "weak_adversary", kind="mlp", width=128, lr=3e-3, epochs=12, eval_every=200,
        precision="bfloat16",
    )  # fmt: skip
    mixed = attack.fit(heads["train"], heads["val"], ti, vi, seed=0)
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    assert mixed.history != recon.history
    best = {name: min(h["val"] for h in r.history) for name, r in (("f", recon), ("m", mixed))}
    assert best["m"] < 1.05 * best["f"]
    tau = nn_mse_threshold(ti, vi)
    full = fit_normaliser(heads["train"], covariance=True)
    rates = [
        evaluate_reconstructor(r, heads["val"], vi, vl, tau=tau, null=full) for r in (recon, mixed)
    ]
    assert rates[1]["tpr"] > rates[1]["fpr"] + 0.15
    assert rates[1]["tpr"] > rates[0]["tpr"] - 0.05


def test_precision_is_checked_and_left_out_of_the_repr():
    assert WeakAdversary().params()["precision"] == "float32"
    assert "precision" not in repr(WeakAdversary(precision="bfloat16"))  # see the field
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        WeakAdversary(precision="float16")  # type: ignore[arg-type]


def test_reconstructions_in_parts_are_those_of_one_pass(trained):
    from privlab.attacks.reconstruction import weak_adversary

    recon, *_ = trained
    theta = torch.randn(3 * weak_adversary.EVAL_ROWS + 5, int(recon.normaliser.mean.numel()))
    classes = torch.arange(len(theta)) % 4
    with torch.no_grad():
        whole = recon.model.eval()(recon.inputs(theta, classes))
    torch.testing.assert_close(recon(theta, classes), whole)
    assert recon(theta[:0], classes[:0]).shape == (0, *whole.shape[1:])
