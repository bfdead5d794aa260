"""The client-side dropout defence: exact without dropout, seeded, and it costs the attack."""

import pytest
import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import server_target
from privlab.federated import client_update
from privlab.federated.defences import DEFENCES, defended_update
from privlab.metrics.image_quality import match_reconstructions
from privlab.registry import ATTACKS

pytestmark = pytest.mark.usefixtures("one_thread")


def _setting():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x, torch.tensor([2, 5])


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_rate_zero_is_the_plain_update_and_bad_rates_are_refused():
    model, x, y = _setting()
    clean = client_update(model, x, y)
    same = defended_update(model, x, y, DEFENCES.build("dropout", p=0.0))
    assert all(torch.equal(clean.gradients[n], same.gradients[n]) for n in clean.gradients)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="dropout rate"):
            DEFENCES.build("dropout", p=bad)
    with pytest.raises(ValueError, match="seeded torch.Generator"):
        defended_update(model, x, y, DEFENCES.build("dropout", p=0.5))


def test_masks_are_seeded_change_the_update_and_leave_the_model_alone():
    model, x, y = _setting()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    defence = DEFENCES.build("dropout", p=0.5)
    a = defended_update(model, x, y, defence, generator=_gen(3))
    b = defended_update(model, x, y, defence, generator=_gen(3))
    c = defended_update(model, x, y, defence, generator=_gen(4))
    clean = client_update(model, x, y)
    assert all(torch.equal(a.gradients[n], b.gradients[n]) for n in a.gradients)
    assert not torch.equal(a.gradients["3.weight"], c.gradients["3.weight"])
    assert not torch.equal(a.gradients["1.weight"], clean.gradients["1.weight"])
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert not model._forward_pre_hooks and not model[3]._forward_pre_hooks


def test_dropout_degrades_inverting_gradients():
    model, x, y = _setting()
    attack = ATTACKS.build("inverting_gradients", iterations=150, restarts=1)
    target = server_target(model, input_shape=(1, 8, 8), num_classes=10)

    def psnr(obs):
        r = attack.invert(target, obs, seed=0)
        return match_reconstructions(r.images, x).summary()["psnr"]

    clear = psnr(client_update(model, x, y))
    dropped = psnr(defended_update(model, x, y, DEFENCES.build("dropout", p=0.5), generator=_gen()))
    assert clear > 25 and dropped < clear - 8
