"""The informed adversary's closed-form attack on L2-regularised softmax regression."""

import numpy as np
import pytest
import torch

from privlab.attacks.reconstruction.closed_form import softmax_regression, train_to_optimum
from privlab.data.bundle import Split
from privlab.registry import ATTACKS, DATASETS
from privlab.threat_model import Access, AccessDenied, Target, TargetInfo

L2 = 1e-3


@pytest.fixture(scope="module")
def released():
    digits = DATASETS.build("digits", seed=0)
    fixed = digits.members.subset(np.arange(300))  # D₋, known to the adversary
    z = digits.nonmembers.subset(np.array([7]))  # the unknown target point
    data = Split(torch.cat([fixed.x, z.x]), torch.cat([fixed.y, z.y]))
    torch.manual_seed(0)
    model = train_to_optimum(softmax_regression(digits.input_shape, 10), data, l2=L2)
    info = TargetInfo("softmax", 10, digits.input_shape)
    return digits, fixed, z, model, info


def test_exact_recovery_of_the_unknown_point(released):
    _, fixed, z, model, info = released
    recon = ATTACKS.build("closed_form_softmax", l2=L2).reconstruct(
        Target(model, info, Access.WEIGHTS), fixed
    )
    assert recon.labels.tolist() == z.y.tolist()
    # exact: trained to a gradient ≤ 1e-12 (L-BFGS alone stalled near 1e-9 here: MSE ~1e-8)
    assert float((recon.images - z.x).pow(2).mean()) < 1e-14


def test_trained_to_the_optimum_in_float64(released):
    _, fixed, z, model, _ = released
    x = torch.cat([fixed.x, z.x]).double().flatten(1)
    y = torch.cat([fixed.y, z.y])
    w, b = (p.detach().clone().requires_grad_() for p in model.parameters())
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * L2 * w.pow(2).sum()
    grads = torch.autograd.grad(loss, [w, b])
    assert max(float(g.abs().max()) for g in grads) < 1e-11  # L-BFGS alone: ~1e-8


def test_conjugate_gradients_solves_a_positive_definite_system():
    from privlab.attacks.reconstruction.closed_form import _conjugate_gradients

    gen = torch.Generator().manual_seed(0)
    m = torch.randn(60, 60, generator=gen, dtype=torch.float64)
    a = m @ m.T + 1e-2 * torch.eye(60, dtype=torch.float64)  # condition number ~1e5
    b = torch.randn(60, generator=gen, dtype=torch.float64)
    x = _conjugate_gradients(lambda v: a @ v, b, iters=2000)
    assert torch.allclose(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_recovery_fails_without_the_whole_fixed_set(released):
    digits, fixed, z, model, info = released
    recon = ATTACKS.build("closed_form_softmax", l2=L2).reconstruct(
        Target(model, info, Access.WEIGHTS), fixed.subset(np.arange(1, len(fixed)))
    )  # one more unknown point: the system is underdetermined and the answer mixes both
    assert float((recon.images - z.x).pow(2).mean()) > 1e-3


def test_needs_the_weights_and_a_convex_model(released):
    digits, fixed, _, model, info = released
    with pytest.raises(AccessDenied, match="weights"):
        ATTACKS.build("closed_form_softmax").reconstruct(Target(model, info, Access.PROBS), fixed)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Linear(8, 10))
    with pytest.raises(ValueError, match="one Linear layer"):
        ATTACKS.build("closed_form_softmax").reconstruct(Target(mlp, info, Access.WEIGHTS), fixed)


def test_each_member_at_once_equals_one_attack_per_member(released):
    """reconstruct_each (one pass, D₋ = the rest) against reconstruct on each D₋ built by hand."""
    _, fixed, z, model, info = released
    data = Split(torch.cat([fixed.x, z.x]), torch.cat([fixed.y, z.y]))
    target = Target(model, info, Access.WEIGHTS)
    attack = ATTACKS.build("closed_form_softmax", l2=L2)
    rows = torch.tensor([0, 17, 300])
    each = attack.reconstruct_each(target, data, rows)
    for k, i in enumerate(rows.tolist()):
        rest = data.subset(np.delete(np.arange(len(data)), i))
        one = attack.reconstruct(target, rest)
        assert torch.allclose(each.images[k], one.images[0], atol=1e-5)
        assert each.labels[k] == one.labels[0]
    # the model was trained on all of them: every one comes back
    assert float((each.images - data.x[rows]).pow(2).mean()) < 1e-6
    assert attack.stationarity(target, data) < 1e-6


def test_a_model_away_from_the_optimum_is_measured_as_such(released):
    _, fixed, z, model, info = released
    data = Split(torch.cat([fixed.x, z.x]), torch.cat([fixed.y, z.y]))
    noisy = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()
    with torch.no_grad():
        for mine, theirs in zip(noisy.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs + 0.05 * torch.randn_like(theirs))
    attack = ATTACKS.build("closed_form_softmax", l2=L2)
    target = Target(noisy, info, Access.WEIGHTS)
    assert attack.stationarity(target, data) > 1e-3
    each = attack.reconstruct_each(target, data, torch.arange(len(data)))
    assert float((each.images - data.x).pow(2).mean()) > 1e-2
