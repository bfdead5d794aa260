"""Evaluate membership attacks on one target: worst-case and honest thresholds, ROC, CIs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.config import AttackConfig
from privlab.data.bundle import Split
from privlab.data.tabular import decode_record
from privlab.metrics import dp_audit
from privlab.metrics.membership import accuracy_at_threshold, best_threshold, membership_metrics
from privlab.metrics.membership import roc_curve as full_roc
from privlab.registry import ATTACKS
from privlab.threat_model import Knowledge, Target

ROC_GRID = np.concatenate([[0.0], np.logspace(-4, 0, 161)])
EXPOSED = 8  # most exposed members kept per attack
UNNAMED_FEATURES = 64  # unnamed 1-D inputs up to this width are recorded as x0 to x{d-1}
#: δ of the ε lower bound for a target with no DP claim (the usual δ ≪ 1/n of a DP target)
DEFAULT_DELTA = 1e-5


def compact_roc(is_member: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """The ROC on a log-spaced FPR grid (best TPR with FPR ≤ grid point): small, plot-ready."""
    curve = full_roc(is_member, scores)
    idx = np.searchsorted(curve.fpr, ROC_GRID, side="right") - 1
    tpr = np.maximum.accumulate(curve.tpr)[np.clip(idx, 0, None)]
    return {"fpr": ROC_GRID.round(6).tolist(), "tpr": tpr.round(6).tolist()}


def _record_reader(
    members: Split, feature_names: Sequence[str] | None
) -> tuple[str, Sequence[str] | None]:
    """How exposed members are recorded: ``pixels`` for small images, ``features`` (named
    columns, one-hot groups decoded) for 1-D inputs, or nothing."""
    if not len(members):
        return "", None
    x = members.x
    if x.dim() != 2:
        return ("pixels" if x[0].numel() <= 3 * 32 * 32 else ""), None
    d = x.shape[1]
    if feature_names is not None and len(feature_names) == d:
        return "features", feature_names
    return ("features", [f"x{j}" for j in range(d)]) if d <= UNNAMED_FEATURES else ("", None)


def exposure(
    s_in: np.ndarray,
    s_out: np.ndarray,
    members: Split,
    top: int = EXPOSED,
    feature_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``top`` most exposed members: highest scores, each with the false-positive rate at
    which a threshold on its score would catch it (share of non-members scoring as high) and,
    so the report can show which points leak: for small images its ``pixels``; for 1-D inputs
    its ``features`` (attribute → value, one-hot groups decoded; named by ``feature_names``,
    else x0 to x{d-1} when d ≤ :data:`UNNAMED_FEATURES`)."""
    order = np.argsort(-s_in, kind="stable")[:top]
    out_sorted = np.sort(s_out)
    kind, names = _record_reader(members, feature_names)
    rows = []
    for i in order:
        fpr = 1.0 - np.searchsorted(out_sorted, s_in[i], side="left") / max(len(s_out), 1)
        row: dict[str, Any] = {
            "index": int(i),
            "label": int(members.y[i]),
            "score": float(s_in[i]),
            "fpr": float(fpr),
        }
        if kind == "pixels":
            row["pixels"] = members.x[i].float().numpy().round(3).tolist()
        elif kind == "features" and names is not None:
            row["features"] = decode_record(members.x[i].tolist(), names)
        rows.append(row)
    return rows


def build_attack(cfg: AttackConfig) -> MembershipAttack:
    attack: MembershipAttack = ATTACKS.build(cfg.name, **cfg.params)
    return attack


def _labels(n_in: int, n_out: int) -> np.ndarray:
    return np.r_[np.ones(n_in, dtype=bool), np.zeros(n_out, dtype=bool)]


def reference_scores(
    attack: MembershipAttack, knowledge: Knowledge
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Scores, membership labels and classes of the attacker's labelled reference data."""
    if not knowledge.reference:
        return None
    scores, labels, classes = [], [], []
    for ref in knowledge.reference:
        for split, member in ((ref.members, True), (ref.nonmembers, False)):
            scores.append(attack.score(ref.target, split.x, split.y))
            labels.append(np.full(len(split), member))
            classes.append(split.y.numpy())
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(classes)


def _honest(
    labels: np.ndarray, scores: np.ndarray, threshold: float, source: str
) -> dict[str, Any]:
    acc = accuracy_at_threshold(labels, scores, threshold)
    return {"accuracy": acc, "advantage": 2 * (acc - 0.5), "threshold": threshold, "source": source}


def _fit(
    attack: MembershipAttack,
    ref: tuple[np.ndarray, ...] | None,
    source: str,
    mask: np.ndarray | None = None,
) -> tuple[float, str] | None:
    """The attack's own decision threshold, else the best one on the reference data."""
    if attack.decision_threshold is not None:
        return attack.decision_threshold, "attack"
    if ref is None:
        return None
    scores, labels = ref[0], ref[1]
    if mask is not None:
        scores, labels = scores[mask], labels[mask]
    if labels.all() or not labels.any():
        return None
    return best_threshold(labels, scores).threshold, source


def per_class_metrics(
    attack: MembershipAttack,
    labels: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    ref: tuple[np.ndarray, ...] | None,
    source: str,
) -> dict[str, Any]:
    """Song et al. Table 7: per class, the oracle accuracy and the accuracy of a threshold
    fitted on that class's reference points only ("confidence-infer")."""
    out: dict[str, Any] = {}
    for c in np.unique(classes):
        sel = classes == c
        if labels[sel].all() or not labels[sel].any():
            continue
        entry: dict[str, Any] = {
            "accuracy": best_threshold(labels[sel], scores[sel]).accuracy,
            "honest_accuracy": None,
        }
        fit = _fit(attack, ref, source, None if ref is None else ref[2] == c)
        if fit is not None:
            entry["honest_accuracy"] = accuracy_at_threshold(labels[sel], scores[sel], fit[0])
        out[str(int(c))] = entry
    return out


def evaluate_attack(
    cfg: AttackConfig,
    target: Target,
    knowledge: Knowledge,
    members: Split,
    nonmembers: Split,
    seed: int,
    feature_names: Sequence[str] | None = None,
    delta: float = DEFAULT_DELTA,
) -> dict[str, Any]:
    """One attack fitted and scored on the evaluation members and non-members: metrics, ROC,
    the most exposed members (``feature_names``: the columns of 1-D inputs) and the ε lower
    bound its results prove at ``delta`` (the target's DP δ, or the default)."""
    attack = build_attack(cfg)
    torch.manual_seed(seed)  # PGD random starts
    start = time.perf_counter()
    attack.fit(knowledge)
    s_in = attack.score(target, members.x, members.y)
    s_out = attack.score(target, nonmembers.x, nonmembers.y)
    labels = _labels(len(s_in), len(s_out))
    scores = np.r_[s_in, s_out]
    classes = np.r_[members.y.numpy(), nonmembers.y.numpy()]
    metrics = membership_metrics(labels, scores)
    source = knowledge.reference[0].source if knowledge.reference else "none"
    ref = reference_scores(attack, knowledge) if attack.decision_threshold is None else None
    fit = _fit(attack, ref, source)
    metrics["honest"] = None if fit is None else _honest(labels, scores, *fit)
    metrics["per_class"] = per_class_metrics(attack, labels, scores, classes, ref, source)
    metrics["epsilon_lower_bound"] = dp_audit.epsilon_lower_bound(
        labels, scores, delta=delta, confidence=0.95, seed=seed
    ).as_dict()
    return {
        "name": cfg.name,
        "label": cfg.display,
        "family": attack.family,
        "params": attack.params(),
        "seconds": time.perf_counter() - start,
        "n_eval": {"members": len(s_in), "nonmembers": len(s_out)},
        "metrics": metrics,
        "roc": compact_roc(labels, scores),
        "exposed": exposure(s_in, s_out, members, feature_names=feature_names),
    }
