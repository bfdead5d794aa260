"""A hand-made targets report (schema 2, two seeds, two regimes) for the report tests
(plain functions; the tests read it through their own fixtures)."""

from __future__ import annotations

from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPLIT_HASHES = {"members": "1" * 64, "nonmembers": "2" * 64, "population": "3" * 64}
ATTACKS = [
    ("adversarial_confidence", "I_A"),
    ("benign_confidence", "I_B"),
    ("loss_threshold", "I_L"),
]


def _roc(rng: np.random.Generator, n: int = 60) -> dict[str, list[float]]:
    fpr = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, n)), [1.0]])
    tpr = np.maximum.accumulate(np.clip(fpr + rng.uniform(0, 0.2, fpr.size), 0, 1))
    tpr[0], tpr[-1] = 0.0, 1.0
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _hist(rng: np.random.Generator) -> dict[str, Any]:
    members = rng.dirichlet(np.linspace(5, 0.5, 40)).tolist()
    nonmembers = rng.dirichlet(np.linspace(0.5, 5, 40)).tolist()
    edges = np.linspace(-4, 1, 41).tolist()
    return dict(log10=True, bins=edges, members=members, nonmembers=nonmembers)


def _attack(rng: np.random.Generator, name: str, label: str, acc: float) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "family": "membership",
        "params": {},
        "seconds": 1.2,
        "n_eval": {"members": 599, "nonmembers": 599},
        "metrics": {
            "accuracy": acc,
            "advantage": 2 * (acc - 0.5),
            "auc": acc + 0.02,
            "threshold": 0.9,
            "tpr_at_fpr": {"0.1": 0.3, "0.01": 0.05, "0.001": 0.0},
            "tpr_at_fpr_ci": {"0.1": [0.25, 0.35], "0.01": [0.02, 0.08], "0.001": [0.0, 0.01]},
            "honest": dict(accuracy=acc - 0.01, advantage=2 * (acc - 0.51), source="shadow"),
        },
        "roc": _roc(rng),
    }


def _target(rng: np.random.Generator, base: str, seed: int, test_acc: float) -> dict[str, Any]:
    dp = base == "dp_sgd"
    return {
        "name": f"{base}/seed{seed}",
        "base_name": base,
        "seed": seed,
        "regime": base,
        "regime_params": {"eps": 0.1, "steps": 10},
        "model": {"name": "mlp", "params": {"hidden": [64]}},
        "model_sha256": "ab" * 32,
        "temperature": 1.0,
        "train_seconds": 3.2,
        "utility": dict(train_acc=1.0, test_acc=test_acc, adv_train_acc=0.9, adv_test_acc=0.7),
        "privacy": {"epsilon": 3.2, "delta": 1e-5, "accountant": "rdp"} if dp else {},
        "losses": _hist(rng),
        "attacks": [
            _attack(rng, name, label, 0.6 + 0.01 * i + 0.001 * seed)
            for i, (name, label) in enumerate(ATTACKS)
        ],
    }


def make_report(seed: int = 0) -> dict[str, Any]:
    """Targets pgd_at and dp_sgd over seeds 0 and 1 (test accuracy 95% at seed 0, 94% at 1)."""
    rng = np.random.default_rng(seed)
    runs = [
        {
            "seed": s,
            "data": dict(
                name="digits", members=599, nonmembers=599, population=599, sha256=SPLIT_HASHES
            ),
            "targets": [_target(rng, base, s, 0.95 - 0.01 * s) for base in ("pgd_at", "dp_sgd")],
        }
        for s in (0, 1)
    ]
    return {
        "schema_version": 2,
        "config": {"name": "robust-vs-natural", "description": "Song et al. Table 1 on digits."},
        "seeds": [0, 1],
        "versions": {"privlab": "0.1.0", "python": "3.11.7", "torch": "2.13.0", "numpy": "2.1"},
        "device": "cpu",
        "timings": {"total_seconds": 12.3, "train_seconds": 8.0, "attack_seconds": 4.0},
        "studies": {"targets": {"runs": runs}},
    }


def targets_in(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's targets, seed after seed (the objects themselves: edits show in the page)."""
    return [t for run in report["studies"]["targets"]["runs"] for t in run["targets"]]


def as_schema_1(report: dict[str, Any]) -> dict[str, Any]:
    """The same report as written before the studies redesign (schema 1: flat targets)."""
    runs = report["studies"]["targets"]["runs"]
    return {
        "schema_version": 1,
        "config": dict(report["config"]),
        "seed": report["seeds"][0],
        "seeds": report["seeds"],
        "versions": report["versions"],
        "device": report["device"],
        "timings": report["timings"],
        "data": {
            "name": runs[0]["data"]["name"],
            "splits": {
                str(r["seed"]): {k: v for k, v in r["data"].items() if k != "name"} for r in runs
            },
        },
        "targets": targets_in(report),
    }
