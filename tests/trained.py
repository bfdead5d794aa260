"""Small trained models shared by the attack tests (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import torch
from torch import nn

from privlab.data.bundle import DataBundle, Split
from privlab.registry import MODELS, REGIMES
from privlab.studies.targets.reference_models import balanced_masks, reference_pool
from privlab.threat_model import Access, ReferenceModels, Target, TargetInfo
from privlab.training.ensembles import train_ensemble
from privlab.training.loop import TrainSpec, train


def _mlp(bundle: DataBundle, seed: int, hidden: tuple[int, ...] = (256,)) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=list(hidden)
    )


def leaky_model(
    bundle: DataBundle, data: Split, epochs: int, seed: int = 0, hidden: tuple[int, ...] = (256,)
) -> nn.Module:
    """A naturally trained MLP; many epochs on few examples make it leak membership."""
    spec = TrainSpec(epochs=epochs, batch_size=16)
    return train(_mlp(bundle, seed, hidden), data, REGIMES.build("natural"), spec, seed=seed).model


def small_target(
    model: nn.Module,
    bundle: DataBundle,
    access: Access = Access.LABELS | Access.PROBS | Access.INPUT_GRADIENTS | Access.WEIGHTS,
) -> Target:
    info = TargetInfo("t", bundle.num_classes, bundle.input_shape, eps=0.1)
    return Target(model, info, access)


def reference_models(
    bundle: DataBundle, count: int = 8, epochs: int = 60, online: bool = True
) -> ReferenceModels:
    """``count`` models trained like the target (one ensemble), each on a random half of the
    attacker's pool."""
    pool = reference_pool(bundle, online)
    masks = balanced_masks(len(pool), count, 0.5, seed=3)
    results = train_ensemble(
        lambda seed: _mlp(bundle, seed),
        pool,
        masks,
        REGIMES.build("natural"),
        TrainSpec(epochs=epochs, batch_size=16),
        seeds=[100 + k for k in range(count)],
    )
    return ReferenceModels(
        [small_target(r.model, bundle) for r in results], pool, masks, online=online
    )
