"""Shared HTML formatting helpers (escaping, numbers, figures, tables, the page shell with its
inline CSS).  Missing values become an em dash."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from privlab.report.figures import png_data_uri
from privlab.report.stats import as_float, rate_pct

__all__ = [
    "CSS",
    "DASH",
    "esc",
    "figure_html",
    "num",
    "page",
    "pct",
    "rate",
    "sci",
    "text_table",
]

DASH = "—"
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sub{font-size:.8em;color:#555}.adv{color:#555}.muted{color:#777}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
code.hash{word-break:break-all}pre{background:#f7f7f7;padding:.8em;overflow:auto}
dl.info{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.info dt{font-weight:600}
dl.info dd{margin:0}.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}
figure img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
span[title]{border-bottom:1px dotted #999;cursor:help}
"""


def esc(x: Any) -> str:
    return DASH if x is None or x == "" else escape(str(x), quote=True)


def pct(x: Any, digits: int = 1) -> str:
    v = as_float(x)
    return DASH if v is None else f"{100 * v:.{digits}f}%"


def rate(x: Any) -> str:
    """A small rate (TPR at low FPR, its interval) in percent: below 1 %, two significant
    digits, so a bound of 0.037 % does not show as 0.0%."""
    v = as_float(x)
    return DASH if v is None else f"{rate_pct(v)}%"


def num(x: Any, fmt: str = ".3f") -> str:
    v = as_float(x)
    return DASH if v is None else format(v, fmt)


def sci(x: float, spec: str = "g") -> str:
    """Compact general format: 1e-05 -> 1e-5, 3.20 -> 3.2."""
    text = format(x, spec)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).lstrip("+") + m.group(2), text)


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def figure_html(fn: Callable[[Any], str], arg: Any, caption: str) -> str:
    """A figure from ``fn(arg)`` (base64 PNG) with its caption; a failing figure becomes a
    note instead of breaking the report."""
    try:
        img = f'<img src="{png_data_uri(fn(arg))}" alt="{esc(caption)}">'
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        img = f'<p class="muted">figure unavailable ({esc(type(exc).__name__)})</p>'
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of already formatted cells (the inversion and reconstruction sections)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class=num>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
