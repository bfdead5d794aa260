"""Verifiers by name: sound margin bounds, their order of tightness, verified accuracy and I_V."""

import numpy as np
import pytest
import torch

from privlab.metrics.utility import adversarial_accuracy, verified_accuracy
from privlab.registry import ATTACKS, MODELS
from privlab.threat_model import Access, Target, TargetInfo
from privlab.verify.verifiers import VERIFIERS, margin_lower_bounds


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return MODELS.build("mlp", input_shape=(1, 8, 8), num_classes=4, hidden=[32, 32]).eval()


@pytest.mark.parametrize("verifier", sorted(VERIFIERS))
def test_margin_lower_bounds_hold_for_sampled_points(mlp, verifier):
    torch.manual_seed(1)
    x, y, eps = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,)), 0.05
    with torch.no_grad():
        lower = margin_lower_bounds(mlp, x, y, eps, verifier=verifier)
        assert torch.all(lower.gather(1, y.view(-1, 1)) == 0)
        for _ in range(50):
            xs = (x + eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
            logits = mlp(xs)
            margins = logits.gather(1, y.view(-1, 1)) - logits
            assert torch.all(margins >= lower - 1e-5)


def test_crown_verifiers_are_never_looser_than_ibp(mlp):
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 4, (32,))
    with torch.no_grad():
        ibp = margin_lower_bounds(mlp, x, y, 0.05, verifier="ibp")
        for name in ("crown", "crown_ibp"):
            assert torch.all(margin_lower_bounds(mlp, x, y, 0.05, verifier=name) >= ibp - 1e-6)
        assert (margin_lower_bounds(mlp, x, y, 0.05, verifier="crown") - ibp).mean() > 1e-3


def test_verified_accuracy_is_at_most_adversarial_accuracy(tiny):
    from trained import leaky_model

    model = leaky_model(tiny, tiny.members, epochs=10, hidden=(64,))
    x, y = tiny.members.x, tiny.members.y
    adv = adversarial_accuracy(model, x, y, eps=0.02, steps=10)
    certified = {v: verified_accuracy(model, x, y, eps=0.02, verifier=v) for v in VERIFIERS}
    assert all(c <= adv + 1e-9 for c in certified.values())
    assert certified["crown"] >= certified["ibp"]


def test_verified_confidence_uses_the_targets_own_verifier(mlp):
    x, y = torch.rand(20, 1, 8, 8), torch.randint(0, 4, (20,))
    scores = {}
    for verifier in ("ibp", "crown"):
        info = TargetInfo("t", 4, (1, 8, 8), eps=0.05, verifier=verifier)
        target = Target(mlp, info, Access.PROBS | Access.WEIGHTS)
        scores[verifier] = ATTACKS.build("verified_confidence").score(target, x, y)
        named = ATTACKS.build("verified_confidence", verifier=verifier).score(target, x, y)
        assert np.array_equal(scores[verifier], named)
    assert np.all(scores["crown"] >= scores["ibp"] - 1e-12)  # tighter bounds, higher worst case
    assert np.mean(scores["crown"] - scores["ibp"]) > 0


def test_unknown_verifier_is_refused_with_the_known_ones(mlp):
    with pytest.raises(ValueError, match="known verifiers: ibp"):
        ATTACKS.build("verified_confidence", verifier="dual")
    with pytest.raises(ValueError, match="unknown verifier"):
        margin_lower_bounds(mlp, torch.rand(1, 1, 8, 8), torch.tensor([0]), 0.1, verifier="x")
