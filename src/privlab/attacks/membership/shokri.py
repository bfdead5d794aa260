"""Shokri et al.'s shadow-model attack ("Membership Inference Attacks Against Machine Learning
Models", S&P 2017).

The attacker trains shadow models that imitate the target (here: the reference models, each
on its own random part of the attacker's pool) and, per class label, a binary attack network
that tells a shadow model's prediction vectors on its own training points from those on
points it did not see. The attack networks then read the target's prediction vectors. The
networks are the 200-20-2 ones of :mod:`inference_network` on the benign view.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from privlab.attacks.membership.inference_network import InferenceNetwork
from privlab.attacks.membership.queries import usable_reference_models
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Knowledge, LabelledQueries


@ATTACKS.register("shokri")
@dataclasses.dataclass(kw_only=True)
class ShokriShadowModels(InferenceNetwork):
    """Shadow-model attack: per-class networks trained on many shadow models' outputs."""

    name = "shokri"
    requires = Access.PROBS
    needs_reference = False
    needs_reference_models = True
    view: Literal["benign", "untargeted", "targeted"] = "benign"
    log_probs: bool = True
    #: members (and as many non-members) drawn from each shadow model's pool
    per_model: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.view != "benign":
            raise ValueError("the shadow-model attack reads prediction vectors (view: benign)")

    def fit(self, knowledge: Knowledge) -> ShokriShadowModels:
        refs = usable_reference_models(self.name, "offline", knowledge)
        rng = np.random.default_rng(self.seed)
        shadows = []
        for shadow, mask in zip(refs.targets, refs.masks, strict=True):
            n = min(self.per_model, int(mask.sum()), int((~mask).sum()))
            inside = np.sort(rng.permutation(np.flatnonzero(mask))[:n])
            outside = np.sort(rng.permutation(np.flatnonzero(~mask))[:n])
            shadows.append(
                LabelledQueries(shadow, refs.pool.subset(inside), refs.pool.subset(outside))
            )
        super().fit(dataclasses.replace(knowledge, reference=tuple(shadows)))
        return self
