"""The GPU path: reference models trained on CUDA load and score on the CPU with the CPU's
numbers up to floating-point noise, and a Ray task given a GPU share trains on it. Skipped
without CUDA, except where ``PRIVLAB_REQUIRE_CUDA`` is set (benchmarks/gpu_check.sh)."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from privlab.config.base import Component, DataConfig, TrainConfig
from privlab.data.from_config import bundle_from_config
from privlab.run.backend import LocalBackend, Resources, task_device
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import SilentProgress
from privlab.studies.targets.config import ReferenceModelsConfig
from privlab.studies.targets.reference_models import _train, balanced_masks, reference_pool


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        if os.environ.get("PRIVLAB_REQUIRE_CUDA"):
            pytest.fail("PRIVLAB_REQUIRE_CUDA is set but torch sees no CUDA device")
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def _references(device: torch.device):
    bundle = bundle_from_config(DataConfig(name="digits"), 0)
    pool = reference_pool(bundle, online=False)
    cfg = ReferenceModelsConfig(count=8, tasks=2, online=False)
    masks = balanced_masks(len(pool), 8, 0.5, 30_000)
    regime = build_regime(Component(name="natural"), bundle)
    arch = Component(name="mlp", params={"hidden": [64]})
    models, _, _ = _train(
        cfg, lambda s: build_model(arch, bundle, s, regime), pool, masks, regime,
        TrainConfig(epochs=5, batch_size=64), [50_000 + k for k in range(8)], device,
        SilentProgress(), "gpu", LocalBackend(),
    )  # fmt: skip
    return models, bundle


def test_models_trained_on_cuda_score_on_the_cpu_as_on_the_gpu(cuda):
    gpu_models, bundle = _references(cuda)
    cpu_models, _ = _references(torch.device("cpu"))
    x = bundle.nonmembers.x
    with torch.no_grad():
        for g, c in zip(gpu_models, cpu_models, strict=True):
            assert next(g.parameters()).device.type == "cpu"  # they come back on the CPU
            on_cpu = g(x).softmax(1)
            on_gpu = copy.deepcopy(g).to(cuda)(x.to(cuda)).softmax(1).cpu()
            assert torch.allclose(on_cpu, on_gpu, atol=1e-4)  # the same model, either device
            # trained on either device: the same recipe, equal up to the rounding of training
            assert (on_cpu.argmax(1) == c(x).argmax(1)).float().mean() > 0.9


def test_a_task_with_a_gpu_share_runs_on_the_gpu(cuda):
    assert task_device(Resources(gpus=0.25)).type == "cuda"
    assert task_device(Resources(gpus=0)).type == "cpu"
