"""Robust membership inference, RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership
Inference Attacks", ICML 2024).

The likelihood ratio of x against a population example z is

    LR(x, z) = (Pr(x|θ) / Pr(x)) / (Pr(z|θ) / Pr(z)),

where Pr(·|θ) is the target's probability of the true label (averaged over the augmented
``queries``) and Pr(·) its average over reference models. The score of x is the fraction of
population examples z it dominates, LR(x, z) ≥ γ. Online, Pr(x) averages all reference
models (IN and OUT); offline only OUT models are available and Pr(x) is approximated by
½((1 + a)·Pr_OUT(x) + (1 − a)) with the paper's interpolation parameter ``a``. The same
estimator is used for z. The score is a non-decreasing function of Pr(x|θ)/Pr(x), so ties
between examples dominating the same share of z are broken by that ratio itself.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.queries import (
    check_mode,
    true_class_probs,
    usable_reference_models,
)
from privlab.data.bundle import Split
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Knowledge, ReferenceModels, Target


@ATTACKS.register("rmia")
@dataclasses.dataclass(kw_only=True)
class RMIA(MembershipAttack):
    """RMIA: share of population points z with LR(x, z) ≥ γ, LR from reference models."""

    name = "rmia"
    requires = Access.PROBS
    needs_reference_models = True
    mode: Literal["online", "offline"] = "online"
    a: float = 0.3
    gamma: float = 1.0
    num_z: int = 2500
    queries: int = 1
    flip: bool = False
    seed: int = 0
    _refs: ReferenceModels | None = dataclasses.field(default=None, repr=False)
    _z: Split | None = dataclasses.field(default=None, repr=False)
    _z_ratio: dict[int, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if not 0.0 <= self.a <= 1.0:
            raise ValueError(f"a must be in [0, 1], got {self.a}")
        if self.gamma <= 0 or self.num_z < 1 or self.queries < 1:
            raise ValueError("gamma must be positive, num_z and queries ≥ 1")

    def fit(self, knowledge: Knowledge) -> RMIA:
        super().fit(knowledge)
        refs = usable_reference_models("RMIA", self.mode, knowledge)
        if knowledge.population is None or len(knowledge.population) == 0:
            raise ValueError("RMIA compares against population examples; the bundle has none")
        pop = knowledge.population
        rng = np.random.default_rng(self.seed)
        self._z = pop.subset(np.sort(rng.permutation(len(pop))[: self.num_z]))
        self._refs, self._z_ratio = refs, {}
        return self

    def _marginal(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Pr(x): the reference models' average probability of the true label."""
        refs = self._refs
        assert refs is not None
        probs = np.stack(
            [true_class_probs(r, x, y, self.queries, flip=self.flip).mean(1) for r in refs.targets]
        )  # K × n
        if self.mode == "online":
            return probs.mean(axis=0)
        out = ~refs.membership(x, y)
        if out.sum(axis=0).min() == 0:
            raise ValueError("offline RMIA: some examples are IN for every reference model")
        p_out = (probs * out).sum(axis=0) / out.sum(axis=0)
        return 0.5 * ((1.0 + self.a) * p_out + (1.0 - self.a))

    def _ratio(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        p_theta = true_class_probs(target, x, y, self.queries, flip=self.flip).mean(1)
        return p_theta / np.maximum(self._marginal(x, y), 1e-300)

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if self._refs is None or self._z is None:
            raise RuntimeError(f"attack {self.name!r} must be fit before scoring")
        key = id(target)
        if key not in self._z_ratio:
            self._z_ratio[key] = np.sort(self._ratio(target, self._z.x, self._z.y))
        z_sorted = self._z_ratio[key]
        ratio = self._ratio(target, x, y)
        share = np.searchsorted(z_sorted, ratio / self.gamma, side="right") / len(z_sorted)
        tie_break = (0.5 + np.arctan(np.log(np.maximum(ratio, 1e-300))) / np.pi) / (
            2 * (len(z_sorted) + 1)
        )
        return share + tie_break
