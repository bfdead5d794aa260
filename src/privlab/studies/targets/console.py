"""The targets study's console tables: utility with membership accuracy, the most exposed
records of tabular data, and inversion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.studies.base import TextTable
from privlab.studies.targets.aggregate import UTILITY_COLUMNS, targets_of, within_null
from privlab.studies.targets.figures import exposed_records
from privlab.studies.targets.inversion_report import inversion_table


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _utility_keys(utilities: list[Mapping[str, Any]]) -> list[str]:
    """Utility columns with at least one informative value: verified accuracy needs a budget,
    and is left out when nothing was certified (models not trained to be verifiable)."""
    return [
        k
        for k in UTILITY_COLUMNS
        if any(u.get(k) is not None for u in utilities)
        and (not k.startswith("ver_") or any(u.get(k) for u in utilities))
    ]


def membership_text_table(view: Mapping[str, Any]) -> TextTable | None:
    """Utility and worst-case / honest membership accuracy of every target (%)."""
    targets = view.get("targets") or []
    if not targets:
        return None
    labels = list(dict.fromkeys(a["label"] for t in targets for a in t["attacks"]))
    keys = _utility_keys([t["utility"] for t in targets])
    rows = []
    for t in targets:
        cells = {a["label"]: a["metrics"] for a in t["attacks"]}
        attack_cells = []
        for label in labels:
            m = cells.get(label)
            honest = (m or {}).get("honest") or {}
            flag = "*" if m is not None and within_null(m) else ""
            attack_cells.append(
                "—" if m is None else f"{_pct(m['accuracy'])}{flag}/{_pct(honest.get('accuracy'))}"
            )
        rows.append([t["name"], *(_pct(t["utility"].get(k)) for k in keys), *attack_cells])
    title = (
        "membership inference accuracy (worst-case / honest threshold, %; * not above the "
        "no-signal level: the 95th percentile of the permutation null)"
    )
    header = ["target", *(UTILITY_COLUMNS[k] for k in keys), *labels]
    return TextTable(title if labels else "accuracy (%)", header, rows)


def exposed_text_tables(view: Mapping[str, Any]) -> list[TextTable]:
    """Per target whose most exposed members have attributes (1-D inputs): those records."""
    tables = []
    for t in targets_of(view):
        records = exposed_records(t)
        if records is not None:
            label, header, rows = records
            title = f"most exposed training records of {t.get('name')} ({label})"
            tables.append(TextTable(title, header, rows))
    return tables


def inversion_text_table(view: Mapping[str, Any]) -> TextTable | None:
    """Accuracy, robustness, Acc@1, the distance success (within τ; Acc@1 & τ: both) and KNN
    distance per target (report.html has all)."""
    header, cells = inversion_table(view)
    if not cells:
        return None
    several = any(row[1] != "1" for row in cells)
    keep = [
        i
        for i, h in enumerate(header)
        if h in ("target", "test acc", "robust acc")
        or (h == "n" and several)
        or h.endswith(("Acc@1", "within τ", "Acc@1 & τ", "KNN dist"))
    ]
    return TextTable(
        "model inversion (%, KNN distance; within τ: nearest private image of the class within "
        "τ in pixel MSE; Acc@1 & τ: the evaluator agrees and within τ)",
        [header[i] for i in keep],
        [[row[i] for i in keep] for row in cells],
    )
