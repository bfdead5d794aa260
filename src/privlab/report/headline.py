"""The answer first: what leaks and how badly, in each study's own words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.registry import STUDIES


def headlines(report: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(study title, sentences) of every known study that has something to say."""
    out = []
    for name, section in (report.get("studies") or {}).items():
        if name in STUDIES and isinstance(section, Mapping):
            study = STUDIES.build(name)
            lines = study.headline(report, section)
            if lines:
                out.append((str(study.title), lines))
    return out
