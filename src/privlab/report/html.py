"""The report page: one self-contained HTML document for any report.

The page has the run's header (seeds, device, versions, timings), each study's own section
(:meth:`Study.html`), and the config. It has no external assets: CSS is inline and figures
are base64 PNG ``data:`` URIs. Every string taken from the report is HTML-escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privlab.registry import STUDIES
from privlab.report.headline import headlines
from privlab.report.html_format import DASH, esc, num, page, text_table
from privlab.report.schema import upgrade
from privlab.report.seeds import seeds_table
from privlab.run.files import atomic_write_bytes

__all__ = ["render_html", "run_info", "write_html"]


def run_info(report: Mapping[str, Any]) -> str:
    """The run's header: seeds, device, versions, timings, schema."""
    versions = report.get("versions") or {}
    timings = report.get("timings") or {}
    items = [
        ("seeds", ", ".join(esc(s) for s in report.get("seeds") or []) or DASH),
        ("device", esc(report.get("device"))),
        ("versions", " · ".join(f"{esc(k)} {esc(v)}" for k, v in versions.items()) or DASH),
        ("timings", " · ".join(f"{esc(k)} {num(v, '.1f')} s" for k, v in timings.items()) or DASH),
        ("schema", esc(report.get("schema_version"))),
    ]
    info = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<h2>Run</h2><dl class="info">{info}</dl>'


def study_section(report: Mapping[str, Any], name: str, section: Mapping[str, Any]) -> str:
    """One study's part of the page (a study this privlab does not know is named, not lost)."""
    if name not in STUDIES:
        return f"<h2>{esc(name)}</h2><p class=muted>unknown study: not rendered</p>"
    study = STUDIES.get(name)()
    body = study.html(report, section)
    if (over := seeds_table(report, name)) is not None:
        body += f"<h3>{esc(over.title)}</h3>{text_table(over.header, over.rows)}"
    return f'<section id="{esc(name)}"><h2>{esc(study.title)}</h2>{body}</section>'


def _headline(report: Mapping[str, Any]) -> str:
    """The answer first: what leaks and how badly, per study."""
    items = "".join(
        f"<li><b>{esc(title)}</b><ul>{''.join(f'<li>{esc(line)}</li>' for line in lines)}</ul></li>"
        for title, lines in headlines(report)
    )
    return f'<h2>What leaks</h2><ul class="headline">{items}</ul>' if items else ""


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML document."""
    report = upgrade(dict(report))
    config = report.get("config") or {}
    name = config.get("name") or "privlab report"
    parts = [f"<h1>{esc(name)}</h1>"]
    if config.get("description"):
        parts.append(f"<p>{esc(config.get('description'))}</p>")
    parts.append(_headline(report))
    parts.append(run_info(report))
    for study_name, section in (report.get("studies") or {}).items():
        if isinstance(section, Mapping):
            parts.append(study_section(report, study_name, section))
    cfg = json.dumps(config, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>Config</summary><pre>{esc(cfg)}</pre></details>")
    return page(esc(name), "\n".join(parts))


def write_html(report: Mapping[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path`` atomically (temp file + ``os.replace``)."""
    atomic_write_bytes(Path(path), render_html(report).encode("utf-8"))
