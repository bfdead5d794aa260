"""The gradient-inversion study (Liu et al. 2025): clients' defended updates inverted by the
server, scored against the private batches, and each defence's FedAvg utility cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.registry import STUDIES
from privlab.report.levels import WORDS, Level, gradient_level, gradient_reading
from privlab.run.context import RunContext
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of
from privlab.studies.gradient_inversion.config import GradientInversionConfig
from privlab.studies.gradient_inversion.report import (
    html_section,
    loss_text,
    matched_table,
    points_table,
    summary_lines,
    training_lines,
)
from privlab.studies.gradient_inversion.run import run_gradient_inversion_study


def _views(report: Mapping[str, Any], section: StudyReport) -> list[tuple[str, dict[str, Any]]]:
    """Each seed's run in the form the tables read, titled by its seed when there are more."""
    runs = runs_of(section)
    return [
        (f" (seed {r.get('seed')})" if len(runs) > 1 else "", {"gradient_inversion": r})
        for r in runs
    ]


def _psnr(point: Mapping[str, Any]) -> Any:
    return (point.get("best") or {}).get("psnr")


def _images(setting: Mapping[str, Any]) -> int | None:
    """How many private images a client setting's batches hold (None in older reports)."""
    return sum(len(rows) for rows in setting.get("batch_rows") or []) or None


def _level(point: Mapping[str, Any], baseline_psnr: Any, images: int | None) -> Level:
    best = point.get("best") or {}
    level = gradient_level(
        best["psnr"], best.get("ssim"), best.get("identified"), baseline_psnr, images
    )
    return Level.NONE if level is None else level


def _point_text(point: Mapping[str, Any], level: Level, images: int | None) -> str:
    """One defence point: the strongest attack's PSNR, share identified, utility cost, level."""
    best, util = point.get("best") or {}, point.get("utility") or {}
    text = f"{point['label']}: {best['psnr']:.1f} dB"
    if best.get("identified") is not None and images:
        text += f", {round(best['identified'] * images)} of {images} identified"
    elif best.get("identified") is not None:
        text += f", {100 * best['identified']:.0f} % identified"
    if util.get("utility_loss") is not None:
        text += f", utility loss {loss_text(util['utility_loss'], 2)}"
    return f"{text} ({WORDS[level]})"


@STUDIES.register("gradient_inversion")
class GradientInversionStudy(StudyBase):
    """Federated clients' updates inverted by an honest-but-curious server (DLG, Inverting
    Gradients, feature matching, analytic) under defences compared at equal utility loss."""

    name = "gradient_inversion"
    title = "Gradient inversion in federated learning"
    section = GradientInversionConfig
    order = 20

    def run(self, ctx: RunContext, cfg: GradientInversionConfig, seed: int) -> dict[str, Any]:
        result = run_gradient_inversion_study(
            cfg,
            seed,
            state=ctx.state,
            cache=ctx.cache,
            progress=ctx.progress,
            device=ctx.device,
            backend=ctx.backend,
        )
        return {"seed": seed, **result}

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        return "\n".join(
            (f"<h3>seed{title}</h3>" if title else "") + html_section(view)
            for title, view in _views(report, section)
        )

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        tables = []
        for suffix, view in _views(report, section):
            header, rows = points_table(view)
            notes = training_lines(view) + summary_lines(view)
            if rows:
                tables.append(
                    TextTable(f"gradient inversion (PSNR dB, RMSE, %){suffix}", header, rows, notes)
                )
            header, rows = matched_table(view)
            if rows and len(header) > 4:  # client, level, best defence and two defences
                tables.append(TextTable(f"best RMSE at equal utility loss{suffix}", header, rows))
        return tables

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        """Per client setting and defence point: the strongest attack's PSNR, the share of
        private images recognisable, the defence's utility cost and the level of leakage
        (docs/levels.md); then the reading of the most exposed point in words."""
        lines = []
        for suffix, view in _views(report, section):
            for s in view["gradient_inversion"].get("settings") or []:
                client = f"client {s['client']['label']}{suffix}"
                base = ((s.get("baselines") or {}).get("mean_image") or {}).get("psnr")
                points = s.get("points") or []
                n = _images(s)
                read = [(p, _level(p, base, n)) for p in points if _psnr(p) is not None]
                if not read:
                    continue
                lines.append(f"{client}: " + "; ".join(_point_text(p, lv, n) for p, lv in read))
                worst, _ = max(read, key=lambda item: item[1])  # the first at the highest level
                best = worst.get("best") or {}
                reading = gradient_reading(
                    best["psnr"], best.get("ssim"), best.get("identified"), base, n
                )
                lines.append(f"{client}, {worst['label']}: {reading}")
        return lines

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for s in run.get("settings") or []:
            for p in s.get("points") or []:
                best, util = p.get("best") or {}, p.get("utility") or {}
                out[f"{s['client']['label']} · {p['label']}"] = {
                    "best PSNR": best.get("psnr"),
                    "best RMSE": best.get("rmse"),
                    "identified": best.get("identified"),
                    "utility loss": util.get("utility_loss"),
                }
        return out
