"""The likelihood-ratio attack, LiRA (Carlini et al., "Membership Inference Attacks From First
Principles", S&P 2022).

For an example (x, y) the attacker looks at the logit-scaled confidence
φ = log p_y − log Σ_{j≠y} p_j of its reference models, split into those that trained on the
example (IN) and those that did not (OUT), and fits a Gaussian to each. The target's own φ
is then scored by

* ``online``: the log-likelihood ratio log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²);
* ``offline``: the one-sided test −log Pr[Z > φ], Z ~ N(μ_out, σ_out²) (OUT models only, so
  reference models need not have seen the candidates).

With several augmented ``queries`` the per-query scores are summed (a diagonal Gaussian over
the query vector). ``variance: global`` shares one IN and one OUT variance across examples —
the pooled within-example variance over the reference pool — which is steadier with few
reference models (Carlini et al. §VI-A, Fig. 6); ``auto`` (the default) uses it below 64
reference models and per-example variances from 64 on, as Carlini et al. advise (with 16
models on mnist5k, per-example σ from 8 IN and 8 OUT values drops TPR at 0.1% FPR from 1.6%
to chance: benchmarks/README.md).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
from scipy import stats

from privlab.attacks.base import MembershipAttack
from privlab.attacks.membership.queries import check_mode, logit_scaled, usable_reference_models
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Knowledge, ReferenceModels, Target

_MIN_STD = 1e-6
_FIT_EXAMPLES = 2000  # pool examples used to estimate the global variance
GLOBAL_BELOW = 64  # variance "auto": global below this many reference models


def reference_logits(
    refs: ReferenceModels, x: torch.Tensor, y: torch.Tensor, queries: int, flip: bool
) -> np.ndarray:
    """K × n × Q logit-scaled confidences of every reference model."""
    return np.stack([logit_scaled(ref, x, y, queries, flip=flip) for ref in refs.targets])


def masked_mean_std(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and std over the models where ``mask`` is set (values K × n × Q)."""
    w = mask[..., None].astype(np.float64)
    count = np.maximum(w.sum(axis=0), 1.0)
    mean = (values * w).sum(axis=0) / count
    var = (((values - mean) ** 2) * w).sum(axis=0) / count
    return mean, np.sqrt(var)


@ATTACKS.register("lira")
@dataclasses.dataclass(kw_only=True)
class LiRA(MembershipAttack):
    """LiRA: Gaussian likelihood ratio of the target's logit-scaled confidence vs references."""

    name = "lira"
    requires = Access.PROBS
    needs_reference_models = True
    mode: Literal["online", "offline"] = "online"
    variance: Literal["auto", "per_example", "global"] = "auto"
    queries: int = 1
    flip: bool = False
    _refs: ReferenceModels | None = dataclasses.field(default=None, repr=False)
    _global_std: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.variance not in ("auto", "per_example", "global"):
            raise ValueError(f"unknown variance {self.variance!r}; use auto, per_example or global")
        if self.queries < 1:
            raise ValueError(f"queries must be ≥ 1, got {self.queries}")

    def fit(self, knowledge: Knowledge) -> LiRA:
        super().fit(knowledge)
        refs = usable_reference_models("LiRA", self.mode, knowledge)
        self._refs = refs
        variance = self.variance
        if variance == "auto":
            variance = "global" if len(refs) < GLOBAL_BELOW else "per_example"
        self._global_std = self._pooled_std(refs) if variance == "global" else None
        return self

    def _pooled_std(self, refs: ReferenceModels) -> tuple[np.ndarray, np.ndarray]:
        """Pooled within-example IN and OUT standard deviations, per query (Q,)."""
        rng = np.random.default_rng(0)
        n = len(refs.pool)
        idx = np.sort(rng.permutation(n)[: min(n, _FIT_EXAMPLES)])
        pool = refs.pool.subset(idx)
        values = reference_logits(refs, pool.x, pool.y, self.queries, self.flip)
        mask = refs.masks[:, idx]
        out = []
        for m in (mask, ~mask):
            _, std = masked_mean_std(values, m)
            enough = m.sum(axis=0) >= 2
            var = (std[enough] ** 2).mean(axis=0) if enough.any() else np.ones(self.queries)
            out.append(np.sqrt(var))
        return out[0], out[1]

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        refs = self._refs
        if refs is None:
            raise RuntimeError(f"attack {self.name!r} must be fit before scoring")
        phi = logit_scaled(target, x, y, self.queries, flip=self.flip)  # n × Q
        values = reference_logits(refs, x, y, self.queries, self.flip)  # K × n × Q
        inside = refs.membership(x, y)  # K × n
        mu_out, sd_out = masked_mean_std(values, ~inside)
        if (~inside).sum(axis=0).min() == 0:
            raise ValueError("some examples are IN for every reference model; none is OUT")
        if self.mode == "offline":
            sd_out = self._std(sd_out, ~inside, 1)
            return -stats.norm.logsf(phi, mu_out, sd_out).sum(axis=1)
        if inside.sum(axis=0).min() == 0:
            raise ValueError(
                "online LiRA: some queried examples are in no reference model's training set "
                "(they are not in the reference pool); use mode: offline"
            )
        mu_in, sd_in = masked_mean_std(values, inside)
        sd_in, sd_out = self._std(sd_in, inside, 0), self._std(sd_out, ~inside, 1)
        return (stats.norm.logpdf(phi, mu_in, sd_in) - stats.norm.logpdf(phi, mu_out, sd_out)).sum(
            axis=1
        )

    def _std(self, per_example: np.ndarray, mask: np.ndarray, which: int) -> np.ndarray:
        """Per-example std, or the global one (always where fewer than two models agree)."""
        if self._global_std is None:
            few = mask.sum(axis=0) < 2
            if not few.any():
                return np.maximum(per_example, _MIN_STD)
            fallback = np.sqrt((per_example[~few] ** 2).mean(axis=0)) if (~few).any() else 1.0
            per_example = np.where(few[:, None], fallback, per_example)
            return np.maximum(per_example, _MIN_STD)
        return np.maximum(np.broadcast_to(self._global_std[which], per_example.shape), _MIN_STD)
