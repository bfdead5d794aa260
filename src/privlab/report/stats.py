"""Numbers in reports: finite floats, mean ± sample std, markdown tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

Stat = tuple[float | None, float | None]


def as_float(x: Any) -> float | None:
    """``x`` as a finite float, or None for None/NaN/inf/bools/non-numbers."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mean_std(values: Iterable[Any]) -> Stat:
    """Mean and sample std (n-1; 0 when n == 1) of the finite values, None if none."""
    xs = [v for v in (as_float(x) for x in values) if v is not None]
    if not xs:
        return (None, None)
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return (m, 0.0)
    return (m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)))


def format_pm(stat: Stat | None) -> str:
    """``(mean, std)`` of a fraction as ``"95.0 ± 1.2"`` (percent), or ``—``."""
    m, s = stat or (None, None)
    if m is None:
        return "—"
    return f"{100 * m:.1f} ± {100 * (s or 0.0):.1f}"


def rate_pct(value: float) -> str:
    """A rate in percent: one decimal, two significant digits below 1 % (so a bound of
    0.037 % does not print as 0.0)."""
    v = 100 * value
    return f"{v:.1f}" if v >= 1 or v == 0 else f"{v:.2g}"


def md_escape(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of already formatted cells."""
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
