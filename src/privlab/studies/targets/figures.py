"""Membership figures of the targets study: ROC, loss histograms, advantage bars, leave-out
sensitivity and the most exposed training points (base64 PNG; tabular records as a table)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from privlab.report.figures import (
    float_list,
    new_figure,
    placeholder,
    roc_curves_figure,
    to_b64,
)
from privlab.report.stats import as_float
from privlab.studies.targets.aggregate import attack_label, attacks_of, targets_of

DEFAULT_FPR_FLOOR = 1e-3


def _fpr_floor(target: Mapping[str, Any]) -> float:
    """Lower axis limit: 1e-3, or 1/n when more non-members than that were evaluated."""
    ns = []
    for attack in attacks_of(target):
        n = as_float((attack.get("n_eval") or {}).get("nonmembers"))
        if n and n > 0:
            ns.append(n)
    if not ns:
        return DEFAULT_FPR_FLOOR
    return max(min(DEFAULT_FPR_FLOOR, 1.0 / max(ns)), 1e-6)


def roc_figure(target: Mapping[str, Any], log: bool = True) -> str:
    """ROC curves, one per attack of ``target`` (base64 PNG): log-log (the low-FPR regime
    that matters for privacy) or linear (the whole curve, whose area is the AUC)."""
    floor = _fpr_floor(target) if log else 0.0
    curves = []
    for attack in attacks_of(target):
        roc = attack.get("roc") or {}
        fpr, tpr = float_list(roc.get("fpr")), float_list(roc.get("tpr"))
        if not fpr or not tpr or len(fpr) != len(tpr):
            continue
        label = str(attack.get("label") or attack.get("name") or "attack")
        auc = as_float((attack.get("metrics") or {}).get("auc"))
        label += f" (AUC {auc:.3f})" if auc is not None else " (AUC —)"
        curves.append((label, fpr, tpr))
    if not curves:
        return placeholder("no ROC data")

    return roc_curves_figure(curves, floor=floor, log=log, title=str(target.get("name") or ""))


def linear_roc_figure(target: Mapping[str, Any]) -> str:
    """The ROC curves of ``target`` on linear axes."""
    return roc_figure(target, log=False)


def loss_histogram_figure(target: Mapping[str, Any]) -> str:
    """Member vs non-member loss histograms (Song et al. Fig. 1) as a base64 PNG."""
    losses = target.get("losses")
    if not isinstance(losses, Mapping):
        return placeholder("no loss histogram")
    edges = float_list(losses.get("bins"))
    members = float_list(losses.get("members"))
    nonmembers = float_list(losses.get("nonmembers"))
    series = [(s, lab) for s, lab in ((members, "members"), (nonmembers, "non-members")) if s]
    if not edges or len(edges) < 2 or not series:
        return placeholder("no loss histogram")
    if any(len(s) != len(edges) - 1 for s, _ in series):
        return placeholder("malformed loss histogram")
    log10 = bool(losses.get("log10"))
    if log10:
        edges = [10.0**e for e in edges]

    fig = new_figure()
    ax = fig.add_subplot()
    for (counts, label), colour in zip(series, ("tab:blue", "tab:orange"), strict=False):
        ax.stairs(counts, edges, fill=True, alpha=0.25, color=colour)
        ax.stairs(counts, edges, lw=1.5, color=colour, label=label)
    if log10:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("cross-entropy loss" + (" (log scale)" if log10 else ""))
    ax.set_ylabel("fraction of examples")
    ax.set_title(str(target.get("name") or ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return to_b64(fig)


def advantage_bar_figure(report: Mapping[str, Any]) -> str:
    """Grouped bars: membership advantage of each attack, per target (base64 PNG)."""
    targets = targets_of(report)
    labels: list[str] = []
    for t in targets:
        for a in attacks_of(t):
            lab = attack_label(a)
            if lab not in labels:
                labels.append(lab)
    if not targets or not labels:
        return placeholder("no attacks", 7.0, 3.0)

    def value(t: Mapping[str, Any], lab: str) -> float:
        for a in attacks_of(t):
            if attack_label(a) == lab:
                v = as_float((a.get("metrics") or {}).get("advantage"))
                return math.nan if v is None else 100.0 * v
        return math.nan

    width = max(6.0, min(14.0, 1.0 + 0.35 * len(targets) * len(labels)))
    rotate = len(targets) > 4
    fig = new_figure(
        width, 3.6 + (0.6 if rotate else 0.0), bottom=1.2 if rotate else 0.45, top=0.45
    )
    ax = fig.add_subplot()
    bar_w = 0.8 / len(labels)
    xs = range(len(targets))
    for j, lab in enumerate(labels):
        offs = [x - 0.4 + bar_w * (j + 0.5) for x in xs]
        ax.bar(offs, [value(t, lab) for t in targets], width=bar_w, label=lab)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xticks(list(xs), [str(t.get("name") or "?") for t in targets], fontsize=8)
    if rotate:
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
    ax.set_ylabel("membership advantage (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(
        fontsize=8,
        ncols=min(len(labels), 6),
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        frameon=False,
        borderaxespad=0.2,
    )
    return to_b64(fig)


def sensitivity_figure(report: Mapping[str, Any]) -> str:
    """Song et al. Fig. 2: each target's leave-out sensitivities, sorted (base64 PNG)."""
    curves = [
        (str(t.get("name") or "?"), (t.get("sensitivity") or {}).get("values") or [])
        for t in targets_of(report)
    ]
    curves = [(name, values) for name, values in curves if values]
    if not curves:
        return placeholder("no sensitivity analysis")
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for name, values in curves:
        ax.plot(range(1, len(values) + 1), values, marker=".", lw=1, label=name)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel("removed training point (sorted by sensitivity)")
    ax.set_ylabel("confidence with − without the point")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return to_b64(fig)


def most_exposed_attack(target: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The attack with the highest TPR at 1% FPR (then AUC) that recorded exposed members."""
    best, key = None, (-1.0, -1.0)
    for attack in attacks_of(target):
        if not attack.get("exposed"):
            continue
        metrics = attack.get("metrics") or {}
        tprs = metrics.get("tpr_at_fpr") or {}
        tpr = next((as_float(v) for k, v in tprs.items() if as_float(k) == 0.01), None)
        candidate = (tpr or 0.0, as_float(metrics.get("auc")) or 0.0)
        if candidate > key:
            best, key = attack, candidate
    return best


def _exposed_rows(target: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, list[Any]]:
    attack = most_exposed_attack(target)
    rows = [r for r in (attack or {}).get("exposed") or [] if isinstance(r, Mapping)]
    return attack, rows


def has_exposed_images(target: Mapping[str, Any]) -> bool:
    """Whether the most exposed members were recorded with their pixels (images)."""
    return any(isinstance(r.get("pixels"), list) for r in _exposed_rows(target)[1])


def _cell(value: Any, spec: str = "g") -> str:
    """A value as table text: numbers by ``spec``, strings as they are, None as a dash."""
    if value is None or isinstance(value, str | int):
        return "—" if value is None else str(value)
    number = as_float(value)
    return str(value) if number is None else f"{number:{spec}}"


def exposed_records(target: Mapping[str, Any]) -> tuple[str, list[str], list[list[str]]] | None:
    """The most exposed members recorded with their ``features`` (1-D inputs), as the
    attack's label, a header (index, label, score, FPR, then every attribute) and one row of
    text cells per member; None when no member was recorded with features."""
    attack, rows = _exposed_rows(target)
    rows = [r for r in rows if isinstance(r.get("features"), Mapping)]
    if attack is None or not rows:
        return None
    attributes = list(dict.fromkeys(name for r in rows for name in r["features"]))
    cells = [
        [
            _cell(r.get("index")),
            _cell(r.get("label")),
            _cell(r.get("score"), ".4g"),
            _cell(r.get("fpr"), ".3g"),
            *(_cell(r["features"].get(name)) for name in attributes),
        ]
        for r in rows
    ]
    return attack_label(attack), ["index", "label", "score", "FPR", *attributes], cells


def exposure_figure(target: Mapping[str, Any]) -> str:
    """The training points the strongest attack singles out: image, class, and the FPR at
    which a threshold on its score would catch it (base64 PNG)."""
    attack, rows = _exposed_rows(target)
    images = [r for r in rows if isinstance(r.get("pixels"), list)]
    if attack is None or not images:
        return placeholder("no per-example exposure recorded")
    fig = new_figure(width=1.3 * len(images), height=1.9, bottom=0.05, top=0.45)
    for i, row in enumerate(images):
        ax = fig.add_subplot(1, len(images), i + 1)
        pixels = row["pixels"]
        channels = len(pixels)
        # C×H×W lists → H×W (grey) or H×W×C (colour)
        img: Any = (
            pixels[0]
            if channels == 1
            else [
                [list(px) for px in zip(*rows, strict=True)] for rows in zip(*pixels, strict=True)
            ]
        )
        ax.imshow(img, cmap="gray" if channels == 1 else None, vmin=0.0, vmax=1.0)
        fpr = as_float(row.get("fpr"))
        ax.set_title(
            f"class {row.get('label')}\nFPR {'—' if fpr is None else f'{fpr:.2g}'}", fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"most exposed members under {attack_label(attack)}", fontsize=9)
    return to_b64(fig)
