"""Why PPA's success falls with robustness at matched accuracy while MI-Face's and GMI's rise
(AT-AT study, `results/paper/atat2026_matched_accuracy/report.json`): per target and seed
(not averaged), Spearman correlations of each attack's Acc@1 with the target's robust accuracy
and with the target's own confidence on the attack's reconstructions, with bootstrap 95 %
intervals, and the robustness correlation with the confidence partialled out.

    .venv/bin/python benchmarks/analyse_atat_ppa.py [REPORT.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

from privlab.report.schema import load_report

REPORT = Path("results/paper/atat2026_matched_accuracy/report.json")


def rows(report: dict) -> list[dict]:
    out = []
    for run in report["studies"]["targets"]["runs"]:
        for t in run["targets"]:
            inv, rob = t.get("inversion") or {}, (t.get("inversion") or {}).get("robustness") or {}
            for a in inv.get("attacks") or []:
                out.append(
                    {
                        "target": t.get("base_name") or t["name"],
                        "attack": a["label"],
                        "robust": rob.get("robust_acc"),
                        "acc1": a["acc1"],
                        "confidence": a.get("target_confidence"),
                    }
                )
    return out


def spearman_ci(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    rho = stats.spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    boot = [
        stats.spearmanr(x[i], y[i]).statistic
        for i in (rng.integers(0, len(x), len(x)) for _ in range(2000))
    ]
    lo, hi = np.nanquantile(boot, [0.025, 0.975])
    return float(rho), float(lo), float(hi)


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """ρ(x, y | z) on ranks: the correlation of the residuals after regressing out z."""
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))

    def resid(v: np.ndarray) -> np.ndarray:
        slope, intercept = np.polyfit(rz, v, 1)
        return v - (slope * rz + intercept)

    return float(np.corrcoef(resid(rx), resid(ry))[0, 1])


def _ci(r: tuple[float, float, float]) -> str:
    return f"{r[0]:+.2f} [{r[1]:+.2f}, {r[2]:+.2f}]"


def main() -> None:
    data = rows(load_report(Path(sys.argv[1]) if len(sys.argv) > 1 else REPORT))
    for attack in sorted({r["attack"] for r in data}):
        sel = [r for r in data if r["attack"] == attack and r["robust"] is not None]
        rob, acc, conf = (
            np.array([r[k] for r in sel], float) for k in ("robust", "acc1", "confidence")
        )
        r1 = spearman_ci(rob, acc)
        r2 = spearman_ci(rob, conf)
        r3 = spearman_ci(conf, acc)
        print(
            f"{attack:8s} n={len(sel)}: ρ(robust, Acc@1) {_ci(r1)}; ρ(robust, target "
            f"confidence) {_ci(r2)}; ρ(confidence, Acc@1) {_ci(r3)}; "
            f"ρ(robust, Acc@1 | confidence) {partial_spearman(rob, acc, conf):+.2f}"
        )
        for family in ("atat", "bido", "pgd_at", "mid"):
            keep = np.array([not r["target"].startswith(family) for r in sel])
            rho = _ci(spearman_ci(rob[keep], acc[keep]))
            print(f"           without {family}: ρ(robust, Acc@1) {rho}")


if __name__ == "__main__":
    main()
