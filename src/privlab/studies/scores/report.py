"""The scores study's rendering: metric rows with intervals, ROC figures, console lines.

A TPR at an FPR budget the sample cannot resolve (fewer than ``1 / FPR`` non-members) is
shown as unresolved, never as a measurement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privlab.report.figures import float_list, placeholder, roc_curves_figure
from privlab.report.html_format import esc, figure_html, text_table
from privlab.report.stats import as_float

DASH = "—"
#: the low-FPR budgets of the console table and the headline
HEADLINE_FPRS = (0.001, 0.01)


def _pct(x: Any) -> str:
    v = as_float(x)
    return DASH if v is None else f"{100 * v:.2f} %"


def _interval(ci: Any, fmt: str = "pct") -> str:
    values = float_list(ci)
    if not values or len(values) != 2:
        return DASH
    if fmt == "pct":
        return f"[{_pct(values[0])}, {_pct(values[1])}]"
    return f"[{values[0]:.3f}, {values[1]:.3f}]"


def fpr_label(fpr: float) -> str:
    return f"{100 * fpr:g} %"


def low_fpr_row(run: Mapping[str, Any], fpr: float) -> Mapping[str, Any] | None:
    for row in run.get("low_fpr") or []:
        if isinstance(row, Mapping) and as_float(row.get("fpr")) == fpr:
            return row
    return None


def tpr_text(run: Mapping[str, Any], fpr: float) -> str:
    """``TPR [low, high]``, or why the sample cannot resolve this budget."""
    row = low_fpr_row(run, fpr)
    if row is None:
        return DASH
    if not row.get("resolved"):
        return f"unresolved (needs ≥ {row.get('min_nonmembers')} non-members)"
    return f"{_pct(row.get('tpr'))} {_interval(row.get('ci'))}"


def auc_text(run: Mapping[str, Any]) -> str:
    m = run.get("metrics") or {}
    auc = as_float(m.get("auc"))
    return DASH if auc is None else f"{auc:.3f} {_interval(m.get('auc_ci'), 'num')}"


def metric_rows(run: Mapping[str, Any]) -> list[list[str]]:
    """(metric, value with 95 % interval) rows of one seed's run."""
    m = run.get("metrics") or {}
    advantage = f"{_pct(m.get('advantage'))} {_interval(m.get('advantage_ci'))}"
    rows = [
        ["AUC", auc_text(run)],
        ["advantage (best threshold)", advantage],
        ["accuracy A_inf (best threshold)", _pct(m.get("accuracy"))],
    ]
    for row in run.get("low_fpr") or []:
        fpr = as_float(row.get("fpr")) if isinstance(row, Mapping) else None
        if fpr is not None:
            rows.append([f"TPR at {fpr_label(fpr)} FPR", tpr_text(run, fpr)])
    return rows


def _curve(run: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    roc = run.get("roc") or {}
    fpr, tpr = float_list(roc.get("fpr")), float_list(roc.get("tpr"))
    if not fpr or not tpr or len(fpr) != len(tpr):
        return None
    return fpr, tpr


def roc_figure(args: tuple[Mapping[str, Any], bool]) -> str:
    """The run's ROC curve against chance, log-log (``args[1]``) or linear (base64 PNG)."""
    run, log = args
    curve = _curve(run)
    if curve is None:
        return placeholder("no ROC data")
    fpr, tpr = curve
    n_non = int(as_float(run.get("n_nonmembers")) or 1)
    floor = max(1.0 / max(n_non, 1), 1e-5) if log else 0.0
    label = f"AUC {auc_text(run).split(' ')[0]}"
    return roc_curves_figure([(label, fpr, tpr)], floor=floor, log=log)


def _source(run: Mapping[str, Any]) -> str:
    sha = str(run.get("sha256") or "")
    return (
        f"<p class=sub>{esc(run.get('file'))} ({esc(run.get('kind'))}, {esc(run.get('format'))}): "
        f"{esc(run.get('n_members'))} members, {esc(run.get('n_nonmembers'))} non-members; "
        f"sha256 <code class=hash>{esc(sha)}</code></p>"
    )


def run_html(run: Mapping[str, Any]) -> str:
    """One seed's run: where the scores came from, the metric table, both ROC figures."""
    figures = figure_html(
        roc_figure, (run, True), "ROC, log-log (the low-FPR regime)"
    ) + figure_html(roc_figure, (run, False), "ROC, linear axes")
    note = (
        "<p class=sub>95 % intervals: AUC by DeLong, advantage by a DKW band (distribution-"
        "free, valid for the best threshold), TPR by Clopper–Pearson. A TPR at an FPR below "
        "1 / (non-members) cannot be measured and is marked unresolved.</p>"
    )
    return (
        _source(run)
        + text_table(["metric", "value [95 % interval]"], metric_rows(run))
        + note
        + f'<div class="figs">{figures}</div>'
    )


def headline_line(run: Mapping[str, Any], fprs: Sequence[float] = HEADLINE_FPRS) -> str:
    parts = [f"AUC {auc_text(run)}"]
    parts += [f"TPR at {fpr_label(f)} FPR {tpr_text(run, f)}" for f in fprs]
    return "; ".join(parts)
