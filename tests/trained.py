"""Small trained models shared by the attack tests (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from privlab.data.bundle import DataBundle, Split
from privlab.experiment.reference_models import balanced_masks, reference_pool
from privlab.registry import MODELS, REGIMES
from privlab.threat_model import Access, ReferenceModels, Target, TargetInfo
from privlab.training.loop import TrainSpec, train


def leaky_model(
    bundle: DataBundle, data: Split, epochs: int, seed: int = 0, hidden: tuple[int, ...] = (256,)
) -> nn.Module:
    """A naturally trained MLP; many epochs on few examples make it leak membership."""
    torch.manual_seed(seed)
    m = MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=list(hidden)
    )
    spec = TrainSpec(epochs=epochs, batch_size=16)
    return train(m, data, REGIMES.build("natural"), spec, seed=seed).model


def small_target(
    model: nn.Module,
    bundle: DataBundle,
    access: Access = Access.PROBS | Access.INPUT_GRADIENTS | Access.WEIGHTS,
) -> Target:
    info = TargetInfo("t", bundle.num_classes, bundle.input_shape, eps=0.1)
    return Target(model, info, access)


def reference_models(
    bundle: DataBundle, count: int = 8, epochs: int = 60, online: bool = True
) -> ReferenceModels:
    """``count`` models trained like the target, each on a random half of the attacker's pool."""
    pool = reference_pool(bundle, online)
    masks = balanced_masks(len(pool), count, 0.5, seed=3)
    models = [
        small_target(leaky_model(bundle, pool.subset(np.flatnonzero(m)), epochs, 100 + k), bundle)
        for k, m in enumerate(masks)
    ]
    return ReferenceModels(models, pool, masks, online=online)
