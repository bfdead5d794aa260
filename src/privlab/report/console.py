"""Console tables of a report, from each study's :meth:`Study.tables`.

Nothing is truncated: when stdout is not a terminal (a piped log) tables are as wide as their
content, and cells fold rather than being cut with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from privlab.registry import STUDIES
from privlab.report.headline import headlines
from privlab.report.schema import upgrade
from privlab.report.seeds import seeds_table
from privlab.studies.base import TextTable


def study_tables(report: Mapping[str, Any]) -> list[TextTable]:
    """Every study's tables, titled with the run's name."""
    report = upgrade(dict(report))
    name = (report.get("config") or {}).get("name") or "run"
    tables = []
    for study_name, section in (report.get("studies") or {}).items():
        if study_name not in STUDIES or not isinstance(section, Mapping):
            continue
        own = STUDIES.get(study_name)().tables(report, section)
        for table in [*own, *filter(None, [seeds_table(report, study_name)])]:
            tables.append(
                TextTable(f"{name}: {table.title}", table.header, table.rows, table.notes)
            )
    return tables


def output_console(stderr: bool = False) -> Console:
    """A console that never truncates: in a pipe it is as wide as the content needs."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=10_000)
    return console


def print_table(console: Console, table: TextTable) -> None:
    """One table, the first column left-aligned, cells folded (never cut)."""
    rich_table = Table(title=Text(table.title))
    for i, col in enumerate(table.header):
        rich_table.add_column(
            Text(col), justify="left" if i == 0 else "right", overflow="fold", no_wrap=False
        )
    for row in table.rows:
        rich_table.add_row(*(Text(str(cell)) for cell in row))
    console.print(rich_table)
    for note in table.notes:
        console.print(note, markup=False, highlight=False)


def print_report(report: Mapping[str, Any], console: Console) -> None:
    """Every study's tables, then what leaks and how badly, in words."""
    for table in study_tables(report):
        print_table(console, table)
    for title, lines in headlines(upgrade(dict(report))):
        console.print(Text(f"{title}:", style="bold"))
        for line in lines:
            console.print(Text(f"  - {line}"))
