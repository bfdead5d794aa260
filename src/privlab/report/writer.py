"""Write a run's ``report.json`` and ``report.html`` (atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privlab.report.html import write_html
from privlab.run.files import atomic_write_json


def write_report(report: dict[str, Any], out: Path) -> None:
    atomic_write_json(Path(out) / "report.json", report)
    write_html(report, Path(out) / "report.html")
