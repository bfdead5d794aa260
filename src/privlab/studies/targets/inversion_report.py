"""The model-inversion part of a report: per-target rows (mean ± std over seeds), a markdown
table, the privacy–robustness trade-off figure and reconstruction grids for the HTML page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from privlab.report.figures import image_pairs_figure, new_figure, placeholder, to_b64
from privlab.report.image_codec import decode_image_hex
from privlab.report.stats import Stat, format_pm, markdown_table, mean_std
from privlab.studies.targets.aggregate import targets_of

#: per-target measurements next to attack success (key → column header)
TARGET_COLUMNS = {
    "test_acc": "test acc",
    "train_label_acc": "train acc (own labels)",
    "robust_acc": "robust acc",
    "hsic_xz": "nHSIC(X,Z)",
    "hsic_yz": "nHSIC(Y,Z)",
    "dcor_xz": "dCor(X,Z)",  # bias-corrected distance correlation: scale-invariant
    "dcor_yz": "dCor(Y,Z)",
}
#: per-attack metrics (key → column suffix); fractions except the KNN distance and pixel MSE.
#: "within τ": the nearest private image of the class is within τ (pixel MSE); "Acc@1 & τ":
#: the evaluator agrees and within τ (metrics/inversion_distance.py). Older reports lack
#: them, and the pixel MSE: "—".
ATTACK_COLUMNS = {
    "acc1": "Acc@1",
    "dist_success": "within τ",
    "both_success": "Acc@1 & τ",
    "acc5": "Acc@5",
    "nn_acc1": "1-NN acc",
    "knn_dist": "KNN dist",
    "nearest_mse": "pixel MSE",
}


def _layer_mean(layers: list[Mapping[str, Any]], key: str) -> float | None:
    """The mean over hidden layers, None when a layer lacks it (reports written before it)."""
    values = [h.get(key) for h in layers]
    finite = [float(v) for v in values if v is not None]
    return float(np.mean(finite)) if finite and len(finite) == len(values) else None


def _target_values(t: Mapping[str, Any]) -> dict[str, Any]:
    inv = t.get("inversion") or {}
    hsic = inv.get("hsic") or []
    return {
        "test_acc": (t.get("utility") or {}).get("test_acc"),
        "train_label_acc": inv.get("train_label_acc"),
        "robust_acc": (inv.get("robustness") or {}).get("robust_acc"),
        "hsic_xz": np.mean([h["hsic_xz"] for h in hsic]) if hsic else None,
        "hsic_yz": np.mean([h["hsic_yz"] for h in hsic]) if hsic else None,
        "dcor_xz": _layer_mean(hsic, "dcor_xz"),
        "dcor_yz": _layer_mean(hsic, "dcor_yz"),
        "pixels_kept": (inv.get("masked_pixels") or {}).get("pixels_kept"),
        "masked_identical": (inv.get("masked_pixels") or {}).get("identical_outputs"),
    }


def inversion_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target (over seeds): measurements and, per attack label, its metrics."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in targets_of(report):
        if t.get("inversion"):
            groups.setdefault(str(t.get("base_name") or t.get("name")), []).append(t)
    rows = []
    for base, members in groups.items():
        values = [_target_values(t) for t in members]
        row: dict[str, Any] = {"target": base, "n": len(members)}
        row |= {k: mean_std(v[k] for v in values) for k in (*TARGET_COLUMNS, "pixels_kept")}
        row["masked_identical"] = [v["masked_identical"] for v in values]
        per_label: dict[str, list[Mapping[str, Any]]] = {}
        for t in members:
            for a in t["inversion"].get("attacks") or []:
                per_label.setdefault(str(a.get("label")), []).append(a)
        row["attacks"] = {
            label: {k: mean_std(a.get(k) for a in attacks) for k in ATTACK_COLUMNS}
            for label, attacks in per_label.items()
        }
        rows.append(row)
    return rows


def _fmt(stat: Stat, key: str, n: int = 2) -> str:
    """Mean ± std (only the mean for a single seed); percent except KNN distance, pixel MSE,
    nHSIC and dCor."""
    m, s = stat
    if m is None:
        return "—"
    if key == "knn_dist":
        text = f"{m:.0f} ± {(s or 0):.0f}"
    elif key == "nearest_mse":
        text = f"{m:.4f} ± {(s or 0):.4f}"
    elif key.startswith(("hsic", "dcor")):
        text = f"{m:.3f} ± {(s or 0):.3f}"
    else:
        text = format_pm(stat)
    return text if n > 1 else text.split(" ± ")[0]


def inversion_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the inversion table (percent, KNN distance, nHSIC)."""
    rows = inversion_rows(report)
    labels = list(dict.fromkeys(lab for r in rows for lab in r["attacks"]))
    header = ["target", "n", *TARGET_COLUMNS.values()]
    header += [f"{lab} {col}" for lab in labels for col in ATTACK_COLUMNS.values()]
    cells = []
    for r in rows:
        n = r["n"]
        line = [r["target"], str(n)] + [_fmt(r[k], k, n) for k in TARGET_COLUMNS]
        for lab in labels:
            stats = r["attacks"].get(lab) or {}
            line += [_fmt(stats.get(k, (None, None)), k, n) for k in ATTACK_COLUMNS]
        cells.append(line)
    return header, cells


def inversion_markdown(report: Mapping[str, Any]) -> str:
    return markdown_table(*inversion_table(report)) + "\n"


def robustness_correlation(
    report: Mapping[str, Any], attack: str, *, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Spearman ρ across targets (means over seeds) between robust accuracy and the attack's
    Acc@1 and KNN distance: the AT-AT paper's privacy–robustness trade-off (C0.4) predicts
    ρ > 0 for Acc@1 and ρ < 0 for the KNN distance."""
    from scipy.stats import spearmanr

    rows = [
        r
        for r in inversion_rows(report)
        if r["target"] not in exclude and r["robust_acc"][0] is not None and attack in r["attacks"]
    ]
    robust = [r["robust_acc"][0] for r in rows]
    out: dict[str, Any] = {"attack": attack, "targets": [r["target"] for r in rows]}
    for key in ("acc1", "knn_dist"):
        values = [r["attacks"][attack][key][0] for r in rows]
        if len(rows) < 3 or len(set(values)) < 2 or len(set(robust)) < 2:
            out[key] = None
            continue
        rho, p = spearmanr(robust, values)
        out[key] = {"rho": float(rho), "p": float(p)}
    return out


def tradeoff_figure(report: Mapping[str, Any], attack: str | None = None) -> str:
    """Attack success (evaluator Acc@1 and KNN distance) against robust accuracy per target."""
    rows = [r for r in inversion_rows(report) if r["robust_acc"][0] is not None]
    labels = list(dict.fromkeys(lab for r in rows for lab in r["attacks"]))
    attack = attack or (labels[0] if labels else None)
    if not rows or attack is None:
        return placeholder("no robust accuracy measured")
    fig = new_figure(width=10.0, height=4.2, bottom=0.6, top=0.4)
    for i, (key, name) in enumerate((("acc1", "evaluator Acc@1"), ("knn_dist", "KNN distance"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in rows:
            x = r["robust_acc"][0]
            y, err = (r["attacks"].get(attack) or {}).get(key, (None, None))
            if y is None:
                continue
            ax.errorbar(x, y, yerr=err or 0, fmt="o", ms=4, capsize=2)
            ax.annotate(r["target"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("robust test accuracy")
        ax.set_ylabel(f"{attack} {name}" + (" (lower = more leakage)" if key == "knn_dist" else ""))
        ax.grid(alpha=0.3)
    fig.subplots_adjust(wspace=0.3, left=0.08)
    fig.suptitle("privacy–robustness trade-off (mean ± std over seeds)", fontsize=9)
    return to_b64(fig)


def per_class_figure(report: Mapping[str, Any], attack: str | None = None) -> str:
    """Heat map of the per-class reconstruction rate (evaluator Acc@1 of each class's images,
    mean over seeds): one row per target, one column per attacked class."""
    rates: dict[str, dict[str, list[float]]] = {}
    for t in targets_of(report):
        for a in (t.get("inversion") or {}).get("attacks") or []:
            attack = attack or str(a.get("label"))
            if a.get("label") != attack:
                continue
            row = rates.setdefault(str(t.get("base_name") or t.get("name")), {})
            for c, stats in (a.get("per_class") or {}).items():
                row.setdefault(c, []).append(float(stats["acc1"]))
    if not rates:
        return placeholder("no per-class rates recorded")
    classes = sorted({c for row in rates.values() for c in row}, key=int)
    grid = np.array(
        [[np.mean(row.get(c, [np.nan])) for c in classes] for row in rates.values()], dtype=float
    )
    fig = new_figure(
        width=min(14.0, 2.5 + 0.22 * len(classes)), height=1.2 + 0.28 * len(rates), top=0.4
    )
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(rates)), list(rates), fontsize=7)
    ax.set_xticks(range(len(classes)), classes, fontsize=6)
    ax.set_xlabel("attacked class")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    fig.subplots_adjust(left=1.3 / fig.get_figwidth(), right=1 - 0.7 / fig.get_figwidth())
    fig.suptitle(f"{attack}: per-class reconstruction rate (evaluator Acc@1)", fontsize=9)
    return to_b64(fig)


def _grid_mark(g: Mapping[str, Any]) -> str:
    """✓ only when the evaluator agrees AND the image is within τ of a private image of its
    class; ✗ otherwise; — when the report predates the distance success (no ``both``)."""
    both = g.get("both")
    return "—" if both is None else ("✓" if both else "✗")


def grid_figure(attack: Mapping[str, Any]) -> str:
    """Each class's best reconstruction (top row) above its nearest private image (bottom)."""
    grid = [g for g in attack.get("grid") or [] if isinstance(g, Mapping)]
    pairs = [
        (
            decode_image_hex(g["image"]),
            decode_image_hex(g["nearest"]),
            f"{g.get('class_name')} {_grid_mark(g)}",
        )
        for g in grid
    ]
    return image_pairs_figure(
        pairs,
        f"{attack.get('label')}: reconstruction (top) and nearest private image (bottom); "
        "✓ = evaluator agrees and within τ",
    )


def tau_note(report: Mapping[str, Any]) -> str | None:
    """The distance-success threshold τ of every seed and its reference levels, or None when
    no run recorded one (reports before the distance success)."""
    seeds: dict[str, Mapping[str, Any]] = {}
    for t in targets_of(report):
        inv = t.get("inversion") or {}
        if isinstance(inv.get("tau"), int | float):
            seeds.setdefault(str(t.get("seed", "?")), inv)
    if not seeds:
        return None
    values = ", ".join(f"{float(inv['tau']):.4f} (seed {seed})" for seed, inv in seeds.items())
    text = (
        f"τ = {values}: the mean over the private images of the pixel MSE (images in [−1, 1]) "
        "to the nearest non-member of the same class. Within τ: the reconstruction's nearest "
        "private image of its class is at most τ away; Acc@1 & τ: the evaluator agrees too."
    )
    levels = {
        "class_mean_within_tau": "each class's mean private image (a blurry blob, no model "
        "needed) for",
        "heldout_within_tau": "a real image of the class the model never saw (a non-member) for",
    }
    for key, what in levels.items():
        found = [inv[key] for inv in seeds.values() if isinstance(inv.get(key), int | float)]
        if found:
            text += f" Within τ: {what} {100 * float(np.mean(found)):.0f} %."
    return text


def masked_note(report: Mapping[str, Any]) -> list[str]:
    """One line per pixel-masked target: pixels kept and whether masked pixels matter."""
    out = []
    for r in inversion_rows(report):
        kept = r["pixels_kept"][0]
        if kept is None:
            continue
        identical = all(bool(v) for v in r["masked_identical"] if v is not None)
        out.append(
            f"{r['target']}: {kept:.0f} pixels kept on average; rewriting every masked pixel "
            f"{'never changed' if identical else 'CHANGED'} the logits"
        )
    return out


def first_seed_grids(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(target name, attack result) for the first seed of every target, for image grids."""
    seen: set[str] = set()
    out = []
    for t in targets_of(report):
        base = str(t.get("base_name") or t.get("name"))
        if base in seen or not t.get("inversion"):
            continue
        seen.add(base)
        out += [(str(t.get("name")), a) for a in t["inversion"].get("attacks") or []]
    return out


__all__ = [
    "first_seed_grids",
    "grid_figure",
    "inversion_markdown",
    "inversion_rows",
    "inversion_table",
    "masked_note",
    "per_class_figure",
    "robustness_correlation",
    "tau_note",
    "tradeoff_figure",
]
