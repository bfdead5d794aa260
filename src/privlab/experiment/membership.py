"""Evaluate membership attacks on one target: worst-case and honest thresholds, ROC, CIs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.config import AttackConfig
from privlab.data.bundle import Split
from privlab.metrics.membership import accuracy_at_threshold, best_threshold, membership_metrics
from privlab.metrics.membership import roc_curve as full_roc
from privlab.registry import ATTACKS
from privlab.threat_model import Knowledge, Target

ROC_GRID = np.concatenate([[0.0], np.logspace(-4, 0, 161)])


def compact_roc(is_member: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """The ROC on a log-spaced FPR grid (best TPR with FPR ≤ grid point): small, plot-ready."""
    curve = full_roc(is_member, scores)
    idx = np.searchsorted(curve.fpr, ROC_GRID, side="right") - 1
    tpr = np.maximum.accumulate(curve.tpr)[np.clip(idx, 0, None)]
    return {"fpr": ROC_GRID.round(6).tolist(), "tpr": tpr.round(6).tolist()}


def build_attack(cfg: AttackConfig) -> MembershipAttack:
    attack: MembershipAttack = ATTACKS.build(cfg.name, **cfg.params)
    return attack


def _labels(n_in: int, n_out: int) -> np.ndarray:
    return np.r_[np.ones(n_in, dtype=bool), np.zeros(n_out, dtype=bool)]


def honest_threshold(attack: MembershipAttack, knowledge: Knowledge) -> tuple[float, str] | None:
    """A threshold the attacker can choose without the evaluation labels."""
    if attack.decision_threshold is not None:
        return attack.decision_threshold, "attack"
    if not knowledge.reference:
        return None
    scores, labels = [], []
    for ref in knowledge.reference:
        scores += [
            attack.score(ref.target, ref.members.x, ref.members.y),
            attack.score(ref.target, ref.nonmembers.x, ref.nonmembers.y),
        ]
        labels.append(_labels(len(ref.members), len(ref.nonmembers)))
    fit = best_threshold(np.concatenate(labels), np.concatenate(scores))
    return fit.threshold, knowledge.reference[0].source


def evaluate_attack(
    cfg: AttackConfig,
    target: Target,
    knowledge: Knowledge,
    members: Split,
    nonmembers: Split,
    seed: int,
) -> dict[str, Any]:
    attack = build_attack(cfg)
    torch.manual_seed(seed)  # PGD random starts
    start = time.perf_counter()
    attack.fit(knowledge)
    s_in = attack.score(target, members.x, members.y)
    s_out = attack.score(target, nonmembers.x, nonmembers.y)
    labels = _labels(len(s_in), len(s_out))
    scores = np.r_[s_in, s_out]
    metrics = membership_metrics(labels, scores)
    honest = honest_threshold(attack, knowledge)
    if honest is not None:
        acc = accuracy_at_threshold(labels, scores, honest[0])
        metrics["honest"] = {
            "accuracy": acc,
            "advantage": 2 * (acc - 0.5),
            "threshold": honest[0],
            "source": honest[1],
        }
    else:
        metrics["honest"] = None
    return {
        "name": cfg.name,
        "label": cfg.display,
        "family": attack.family,
        "params": attack.params(),
        "seconds": time.perf_counter() - start,
        "n_eval": {"members": len(s_in), "nonmembers": len(s_out)},
        "metrics": metrics,
        "roc": compact_roc(labels, scores),
    }
