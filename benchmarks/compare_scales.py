"""The paper's number, the small-scale run and the full-data run of each claim, side by side
(for docs/reproductions.md), from benchmarks/paper_numbers.yaml and results/paper/*/report.json.

Utility in %, A_inf in % (mean ± sample std over seeds); "clears the null" says for how many
of the full run's seeds the A_inf is above its no-signal level (the permutation null's 95th
percentile). A ``kind: sweep`` comparison gives one row per swept value (a capacity, say)
and "small scale · full data" in each cell, an A_inf's followed by its full-run seeds
clearing the null in brackets. Comparisons of ``kind: weak_adversary`` put
Maciazek & Allison's rates (head accuracy, TPR*, FPR*, TPR at FPR = 0.01, the held-out and
prior-draw baselines) of each variant side by side instead. A run not finished yet shows "—".

Usage: .venv/bin/python benchmarks/compare_scales.py [NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from privlab.report.schema import ReportError, load_report
from privlab.report.stats import format_pm, mean_std
from privlab.studies.targets.aggregate import aggregate_targets, attack_label, attacks_of
from privlab.studies.targets.study import flat_view

NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
RESULTS = Path("results/paper")
#: the metrics that are accuracies of the model, not of an attack
UTILITY = (
    "train_acc",
    "test_acc",
    "adv_train_acc",
    "adv_test_acc",
    "ver_train_acc",
    "ver_test_acc",
)


def _view(config: str) -> dict[str, Any] | None:
    try:
        report = load_report(RESULTS / config / "report.json")
    except (OSError, ReportError):
        return None
    return flat_view(report, report["studies"]["targets"])


def _cell(row: dict[str, Any] | None, metric: str) -> str:
    if row is None:
        return "—"
    stats = (
        row["attacks"].get(metric, {}).get("accuracy")
        if metric in row["attacks"]
        else row.get(metric)
    )
    return "—" if stats is None or stats[0] is None else format_pm(stats)


def _clears_null(view: dict[str, Any] | None, target: str, label: str) -> str:
    """How many seeds' A_inf of ``label`` on ``target`` are above the null's 95th percentile."""
    if view is None:
        return "—"
    verdicts = []
    for t in view["targets"]:
        if (t.get("base_name") or t.get("name")) != target:
            continue
        for a in attacks_of(t):
            m = a.get("metrics") or {}
            null = (m.get("accuracy_null") or {}).get("p95")
            if attack_label(a) == label and null is not None:
                verdicts.append(m["accuracy"] > null)
    return f"{sum(verdicts)}/{len(verdicts)}" if verdicts else "—"


def _configs(names: str | list[str] | None) -> list[str]:
    """A comparison's ``small`` (one config, several, or none) as a list."""
    return [names] if isinstance(names, str) else list(names or [])


def _heading(spec: dict[str, Any], columns: list[str], left: int = 2) -> list[str]:
    """A comparison's title, its note and its table's header (the first ``left`` columns left,
    the numbers right-aligned)."""
    names = _configs(spec.get("small"))
    small = " + ".join(f"`{n}`" for n in names) if names else "no small-scale run"
    return [
        f"**{spec['title']}** ({small} → `{spec['full']}`)",
        "",
        *([spec["note"], ""] if spec.get("note") else []),
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * left + "--:|" * (len(columns) - left),
    ]


def comparison(spec: dict[str, Any]) -> str:
    full = _view(spec["full"])  # read once: its rows and its seeds' null verdicts
    rows = {"small": _rows_by_target(_view(spec["small"])), "full": _rows_by_target(full)}
    renamed = spec.get("targets", {})
    columns = ["target", "metric", "paper", "small scale", "full data"]
    lines = _heading(spec, [*columns, "full: seeds clearing the null"])
    for target, paper in spec["paper"].items():
        for metric in spec["metrics"]:
            is_attack = metric not in UTILITY
            lines.append(
                f"| {target} | {metric} | {paper.get(metric, '—')} | "
                f"{_cell(rows['small'].get(renamed.get(target, target)), metric)} | "
                f"{_cell(rows['full'].get(target), metric)} | "
                f"{_clears_null(full, target, metric) if is_attack else ''} |"
            )
    return "\n".join(lines) + "\n"


#: the weak adversary's rates, each read from one variant of one seed's report
WEAK_METRICS: dict[str, Any] = {
    "head acc": lambda v: v["utility"]["accuracy"],
    "TPR*": lambda v: v["tpr"],
    "FPR*": lambda v: v["fpr"],
    "TPR@FPR=0.01": lambda v: v["tpr_at_fpr_0.01"],
    "held-out FPR*": lambda v: v["held_out"]["fpr"],
    "prior-draw TPR*": lambda v: v["prior_draw_tpr"],
}


def _weak_variants(configs: str | list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each weak-adversary variant's results, one per seed, by variant name, over one config
    or several (Fig. 4's small scale ran N = 10 and N = 40 separately); a config without a
    report adds nothing."""
    out: dict[str, list[dict[str, Any]]] = {}
    for config in _configs(configs):
        try:
            report = load_report(RESULTS / config / "report.json")
        except (OSError, ReportError):
            continue
        for run in report["studies"]["reconstruction"]["runs"]:
            for v in run["weak_adversary"]["variants"]:
                out.setdefault(v["name"], []).append(v)
    return out


def _weak_cell(variants: list[dict[str, Any]], metric: str) -> str:
    values = [WEAK_METRICS[metric](v) for v in variants]
    if len(values) == 1:  # no spread to give
        return f"{100 * values[0]:.1f} (1 seed)"
    return format_pm(mean_std(values)) if values else "—"


def weak_comparison(spec: dict[str, Any]) -> str:
    small, full = _weak_variants(spec["small"]), _weak_variants(spec["full"])
    lines = _heading(spec, ["variant", "metric", "paper", "small scale", "full data"])
    for variant, paper in spec["paper"].items():
        for metric in WEAK_METRICS:
            lines.append(
                f"| {variant} | {metric} | {paper.get(metric, '—')} | "
                f"{_weak_cell(small.get(variant, []), metric)} | "
                f"{_weak_cell(full.get(variant, []), metric)} |"
            )
    return "\n".join(lines) + "\n"


def _rows_by_target(view: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The aggregated row (mean ± std over seeds) of each target of a run ({} if none)."""
    return {r["target"]: r for r in aggregate_targets(view)} if view else {}


def sweep_comparison(spec: dict[str, Any]) -> str:
    """A sweep (e.g. Fig. 3's capacity): one row per swept value, each column one target
    pattern's metric, each cell "small scale · full data" (the paper's values are a plot),
    an A_inf's followed by how many of the full run's seeds clear the null."""
    small = _rows_by_target(_view(spec["small"]) if spec.get("small") else None)
    view = _view(spec["full"])
    full = _rows_by_target(view)
    columns = spec["columns"]
    lines = _heading(spec, [spec["sweep"]["name"], *columns], left=1)
    for value in spec["sweep"]["values"]:
        cells = []
        for pattern, metric in columns.values():
            target = pattern.format(value)
            clears = "" if metric in UTILITY else f" ({_clears_null(view, target, metric)})"
            cells.append(
                f"{_cell(small.get(target), metric)} · {_cell(full.get(target), metric)}{clears}"
            )
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


KINDS = {"weak_adversary": weak_comparison, "sweep": sweep_comparison}


def main(names: list[str]) -> None:
    specs = yaml.safe_load(NUMBERS.read_text())
    for name in names or list(specs):
        spec = specs[name]
        print(KINDS.get(spec.get("kind", ""), comparison)(spec))


if __name__ == "__main__":
    main(sys.argv[1:])
