"""The gradient-inversion study (Liu et al. 2025): clients' defended updates inverted by the
server, scored against the private batches, and each defence's FedAvg utility cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.registry import STUDIES
from privlab.run.context import RunContext
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of
from privlab.studies.gradient_inversion.config import GradientInversionConfig
from privlab.studies.gradient_inversion.report import (
    html_section,
    matched_table,
    points_table,
    summary_lines,
)
from privlab.studies.gradient_inversion.run import run_gradient_inversion_study


def _views(report: Mapping[str, Any], section: StudyReport) -> list[tuple[str, dict[str, Any]]]:
    """Each seed's run in the form the tables read, titled by its seed when there are more."""
    runs = runs_of(section)
    return [
        (f" (seed {r.get('seed')})" if len(runs) > 1 else "", {"gradient_inversion": r})
        for r in runs
    ]


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
            cfg, seed, state=ctx.state, cache=ctx.cache, progress=ctx.progress, device=ctx.device
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
            notes = summary_lines(view)
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
        private images recognisable, and the defence's utility cost."""
        lines = []
        for suffix, view in _views(report, section):
            for s in view["gradient_inversion"].get("settings") or []:
                points = []
                for p in s.get("points") or []:
                    best, util = p.get("best") or {}, p.get("utility") or {}
                    if best.get("psnr") is None:
                        continue
                    text = f"{p['label']}: {best['psnr']:.1f} dB"
                    if best.get("identified") is not None:
                        text += f", {100 * best['identified']:.0f} % identified"
                    if util.get("utility_loss") is not None:
                        text += f", utility loss {util['utility_loss']:.2f}"
                    points.append(text)
                if points:
                    lines.append(f"client {s['client']['label']}{suffix}: " + "; ".join(points))
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
