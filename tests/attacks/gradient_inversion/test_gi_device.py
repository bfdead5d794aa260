"""Gradient-inversion attacks on a chosen device: CPU copies by default, CUDA when present, the
same reconstructions up to floating-point noise; results always come back on the CPU."""

import pytest
import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import server_target
from privlab.federated import client_update
from privlab.metrics.image_quality import match_reconstructions
from privlab.registry import ATTACKS

pytestmark = pytest.mark.usefixtures("one_thread")

ATTACK_PARAMS = {
    "inverting_gradients": {"iterations": 60, "restarts": 1},
    "feature_matching": {"iterations": 60, "restarts": 1},
    "dlg": {"steps": 5, "max_iter": 10},
    "analytic_fc": {},
}


def _setting():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 8, 8, generator=gen)
    y = torch.tensor([3, 7])
    return model, x, y, client_update(model, x, y)


def _invert(name, model, obs, device):
    attack = ATTACKS.build(name, **ATTACK_PARAMS[name])
    target = server_target(model, input_shape=(1, 8, 8), num_classes=10)  # on the CPU
    return attack.invert(target, obs, seed=0, device=device)


@pytest.mark.parametrize("name", sorted(ATTACK_PARAMS))
def test_explicit_cpu_equals_the_default(name):
    model, _, _, obs = _setting()
    default = _invert(name, model, obs, None)
    explicit = _invert(name, model, obs, "cpu")
    assert torch.equal(default.images, explicit.images)
    assert torch.equal(default.labels, explicit.labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(ATTACK_PARAMS))
def test_cuda_matches_cpu_up_to_noise(name):
    model, x, y, obs = _setting()
    cpu = _invert(name, model, obs, "cpu")
    gpu = _invert(name, model, obs, "cuda")
    assert gpu.images.device.type == "cpu" and gpu.labels.device.type == "cpu"
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is not moved
    assert torch.equal(cpu.labels, gpu.labels)
    q_cpu = match_reconstructions(cpu.images, x[: len(cpu.images)]).summary()["psnr"]
    q_gpu = match_reconstructions(gpu.images, x[: len(gpu.images)]).summary()["psnr"]
    assert abs(q_cpu - q_gpu) < 0.1 * max(abs(q_cpu), 1.0)
