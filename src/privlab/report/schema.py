"""The report's schema: one ``schema_version`` for every study, and the upgrade of reports
written before the studies redesign (schema 1: one layout per ``kind:``).

Schema 2::

    {"schema_version": 2, "config": {...}, "seeds": [...], "versions": {...},
     "device": "cpu", "timings": {...},
     "studies": {"<study>": {"runs": [{"seed": 0, ...}, ...]}, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privlab.config.migrate import migrate_dict
from privlab.run.files import read_json

SCHEMA_VERSION = 2


class ReportError(ValueError):
    """A file that is not a privlab report, or one of a newer schema."""


def _runs_by_seed(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Schema 1's flat targets list as one run per seed."""
    data: dict[str, Any] = report["data"] if isinstance(report.get("data"), dict) else {}
    splits: dict[str, Any] = data["splits"] if isinstance(data.get("splits"), dict) else {}
    seeds = report.get("seeds") or [report.get("seed")]
    runs = []
    for seed in seeds:
        split = splits.get(str(seed)) or {}
        runs.append(
            {
                "seed": seed,
                "data": {"name": data.get("name"), **split},
                "targets": [
                    t
                    for t in report.get("targets") or []
                    if isinstance(t, dict) and t.get("seed") == seed
                ],
            }
        )
    return runs


def _from_v1(report: dict[str, Any]) -> dict[str, Any]:
    seeds = report.get("seeds") or [report.get("seed")]
    header = {
        "schema_version": SCHEMA_VERSION,
        "config": migrate_dict(report.get("config") or {}),
        "seeds": seeds,
        "versions": report.get("versions") or {},
        "device": report.get("device"),
        "timings": report.get("timings") or {},
        "upgraded_from": 1,
    }
    first = {"seed": seeds[0]}
    kind = report.get("kind")
    studies: dict[str, Any] = {}
    if kind == "reconstruction":
        parts = {k: report[k] for k in ("weak_adversary", "informed_adversary") if k in report}
        studies["reconstruction"] = {"runs": [first | parts]}
    elif kind is None:
        studies["targets"] = {"runs": _runs_by_seed(report)}
    if isinstance(report.get("gradient_inversion"), dict):
        studies["gradient_inversion"] = {"runs": [first | report["gradient_inversion"]]}
    return header | {"studies": studies}


def upgrade(report: Any, source: str = "report") -> dict[str, Any]:
    """``report`` in the current schema; a foreign or too new file is a ReportError."""
    if not isinstance(report, dict) or "schema_version" not in report:
        raise ReportError(f"{source}: not a privlab report (no schema_version)")
    version = report["schema_version"]
    if version == 1:
        return _from_v1(report)
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{source}: schema_version {version!r} is not one this privlab reads "
            f"(1 or {SCHEMA_VERSION})"
        )
    studies = report.get("studies")
    if not isinstance(studies, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("runs"), list) for s in studies.values()
    ):
        raise ReportError(f"{source}: not a privlab report (no 'studies' with their 'runs')")
    return report


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a ``report.json`` (or a run folder holding one) in the current schema."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix != ".json"):
        path = path / "report.json"  # a run folder (a missing one is named with its report)
    if not path.is_file():
        raise ReportError(f"{path}: not found (is it a run folder?)")
    try:
        return upgrade(read_json(path), str(path))
    except ValueError as err:
        raise ReportError(str(err)) from None
