"""Figures for the HTML report, drawn off-screen with matplotlib's Agg canvas.

Every public function takes a piece of a ``report.json`` dict and returns the figure as
a base64-encoded PNG (no ``data:`` prefix; see :func:`png_data_uri`).  Figures are built
on :class:`matplotlib.figure.Figure` with an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so pyplot's global state and
the process-wide backend are never touched.  Missing or malformed optional data gives a
small placeholder figure rather than an exception.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from privlab.report.stats import as_float

__all__ = [
    "figure_to_png",
    "float_list",
    "image_pairs_figure",
    "new_figure",
    "placeholder",
    "png_data_uri",
    "roc_curves_figure",
    "to_b64",
]

DPI = 100


def new_figure(
    width: float = 5.0, height: float = 4.0, bottom: float = 0.5, top: float = 0.35
) -> Figure:
    # Fixed margins (in inches) instead of constrained/tight layout: half the render time.
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.75 / width, right=1 - 0.15 / width, bottom=bottom / height, top=1 - top / height
    )
    return fig


def figure_to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (no timestamp/software metadata, so output is stable)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def to_b64(fig: Figure) -> str:
    return base64.b64encode(figure_to_png(fig)).decode("ascii")


def png_data_uri(b64_png: str) -> str:
    """``data:`` URI for a base64 PNG string returned by the figure functions."""
    return f"data:image/png;base64,{b64_png}"


def placeholder(message: str, width: float = 5.0, height: float = 4.0) -> str:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.4", transform=ax.transAxes)
    return to_b64(fig)


def float_list(values: Any) -> list[float] | None:
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        return None
    out = [as_float(v) for v in values]
    if any(v is None for v in out):
        return None
    return [float(v) for v in out if v is not None]


def roc_curves_figure(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    floor: float,
    log: bool = True,
    title: str = "",
) -> str:
    """ROC curves ``(label, fpr, tpr)`` beside the chance line (base64 PNG): log-log from
    ``floor`` (the low-FPR regime that matters for privacy) or linear."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([floor, 1.0], [floor, 1.0], linestyle="--", color="0.6", lw=1, label="chance")
    for label, fpr, tpr in curves:
        xs = [min(max(v, floor), 1.0) for v in fpr]
        ys = [min(max(v, floor), 1.0) for v in tpr]
        ax.plot(xs, ys, lw=1.6, label=label)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return to_b64(fig)


def image_pairs_figure(pairs: Sequence[tuple[Any, Any, str]], title: str) -> str:
    """Columns of two images (arrays in [0, 1]): top above bottom, each column titled."""
    if not pairs:
        return placeholder("no reconstructions recorded")
    fig = new_figure(width=max(3.0, 0.75 * len(pairs)), height=2.1, bottom=0.05, top=0.35)
    for i, (top, bottom, label) in enumerate(pairs):
        for row, image in enumerate((top, bottom)):
            ax = fig.add_subplot(2, len(pairs), row * len(pairs) + i + 1)
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 and label:
                ax.set_title(label, fontsize=6)
    fig.subplots_adjust(left=0.02, right=0.98, wspace=0.05, hspace=0.05)
    fig.suptitle(title, fontsize=8)
    return to_b64(fig)
