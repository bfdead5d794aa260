"""A study's scalars over a run's seeds: mean ± sample std per row and metric.

A study reduces one seed's run to scalars (:meth:`Study.scalars`: ``{row: {metric: value}}``).
Here they become the "over the seeds" table that a run of several seeds shows beside its
per-seed tables (console, markdown, HTML), and the numbers the comparison of runs sets side by
side. The targets study summarises its seeds itself (``summarises_seeds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.registry import STUDIES
from privlab.report.schema import upgrade
from privlab.report.stats import Stat, mean_std
from privlab.studies.base import TextTable, runs_of


def _runs(report: Mapping[str, Any], study: str) -> list[Mapping[str, Any]]:
    """The seeds' runs of one study in ``report`` (none when the study is absent)."""
    return runs_of((upgrade(dict(report)).get("studies") or {}).get(study) or {})


def study_stats(report: Mapping[str, Any], study: str) -> dict[str, dict[str, Any]]:
    """``{row: {"n": seeds, metric: (mean, std)}}`` of one study over the run's seeds."""
    scalars = STUDIES.build(study).scalars
    per_row: dict[str, dict[str, list[Any]]] = {}
    for run in _runs(report, study):
        for row, metrics in scalars(run).items():
            for metric, value in metrics.items():
                per_row.setdefault(row, {}).setdefault(metric, []).append(value)
    out: dict[str, dict[str, Any]] = {}
    for row, metrics in per_row.items():
        out[row] = {"n": max(len(v) for v in metrics.values())}
        out[row] |= {metric: mean_std(values) for metric, values in metrics.items()}
    return out


def format_stat(stat: Stat | None) -> str:
    """``(mean, std)`` as ``"0.654 ± 0.049"`` (4 significant digits), or — for no value."""
    mean, std = stat or (None, None)
    if mean is None:
        return "—"
    if not std or std <= 1e-9 * abs(mean):  # equal over the seeds up to rounding
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


def metrics_of(stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The metrics of ``study_stats`` rows, in first-seen order."""
    return list(dict.fromkeys(m for row in stats.values() for m in row if m != "n"))


def seeds_table(report: Mapping[str, Any], study: str) -> TextTable | None:
    """The study's scalars as mean ± std over the run's seeds; None for one seed, or for a
    study that summarises its seeds itself."""
    runs = _runs(report, study)
    study_obj = STUDIES.build(study)
    # a study registered without StudyBase may lack the flag: it gets the table
    if len(runs) < 2 or getattr(study_obj, "summarises_seeds", False):
        return None
    stats = study_stats(report, study)
    if not stats:
        return None
    metrics = metrics_of(stats)
    rows = [
        [row, str(v["n"]), *(format_stat(v.get(m)) for m in metrics)] for row, v in stats.items()
    ]
    title = f"{study_obj.title}: mean ± std over {len(runs)} seeds (fractions, not %)"
    return TextTable(title, ["row", "n", *metrics], rows)
