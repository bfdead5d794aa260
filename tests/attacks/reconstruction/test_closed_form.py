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
    # exact up to the optimiser: gradient norm ~1e-9 leaves an MSE ~1e-8 (RMSE ~ 0.03/255)
    assert float((recon.images - z.x).pow(2).mean()) < 1e-6


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
