"""Markdown summaries and the comparison of runs, for every study.

A study reduces one seed's run to scalars (:meth:`Study.scalars`: ``{row: {metric: value}}``);
here they become mean ± sample std over seeds, one table per study with a row per (run, row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privlab.registry import STUDIES
from privlab.report.console import study_tables
from privlab.report.html_format import esc, page
from privlab.report.schema import upgrade
from privlab.report.seeds import format_stat, metrics_of, study_stats
from privlab.report.stats import markdown_table

Reports = Sequence[tuple[str, Mapping[str, Any]]]


def markdown_report(report: Mapping[str, Any]) -> str:
    """Every study's tables of one report as GitHub markdown."""
    parts = []
    for table in study_tables(report):
        parts.append(f"**{table.title}**\n\n{markdown_table(table.header, table.rows)}")
        parts += list(table.notes)
    return "\n\n".join(parts) + "\n"


def comparison_tables(reports: Reports) -> list[tuple[str, list[str], list[list[str]]]]:
    """One (study title, header, rows) per study present in any of ``reports``."""
    reports = [(label, upgrade(dict(r))) for label, r in reports]  # once per report
    studies = list(
        dict.fromkeys(name for _, r in reports for name in r["studies"] if name in STUDIES)
    )
    tables = []
    for name in studies:
        stats = [(label, study_stats(r, name)) for label, r in reports]
        metrics = list(dict.fromkeys(m for _, s in stats for m in metrics_of(s)))
        rows = [
            [label, row, str(values["n"]), *(format_stat(values.get(m)) for m in metrics)]
            for label, s in stats
            for row, values in s.items()
        ]
        tables.append((str(STUDIES.build(name).title), ["run", "row", "n", *metrics], rows))
    return tables


def comparison_markdown(reports: Reports) -> str:
    """The comparison of runs as markdown: mean ± std over each run's seeds."""
    parts = ["Mean ± sample std over each run's seeds (fractions, not %)."]
    for title, header, rows in comparison_tables(reports):
        parts.append(f"### {title}\n\n{markdown_table(header, rows)}")
    return "\n\n".join(parts) + "\n"


def render_comparison_html(reports: Reports) -> str:
    """The comparison of runs as a self-contained HTML page."""
    parts = [
        f"<h1>Run comparison</h1><p>Runs: {', '.join(esc(lab) for lab, _ in reports)}. "
        "Mean ± sample std over each run's seeds.</p>"
    ]
    for title, header, rows in comparison_tables(reports):
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f'<td class="n">{esc(c)}</td>' for c in row) + "</tr>" for row in rows
        )
        parts.append(f"<h2>{esc(title)}</h2><table><tr>{head}</tr>{body}</table>")
    return page("Run comparison", "\n".join(parts))
