"""The reconstruction study: training data reconstructed from released weights, by the weak
adversary (Maciazek & Allison) and the informed adversary (Balle et al.), with ReRo bounds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from privlab.registry import STUDIES
from privlab.run.context import RunContext
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of
from privlab.studies.reconstruction.config import ReconstructionConfig
from privlab.studies.reconstruction.informed import run_informed_adversary
from privlab.studies.reconstruction.released import run_released_model
from privlab.studies.reconstruction.report import (
    html_section,
    informed_table,
    released_lines,
    released_table,
    released_weak_table,
    weak_table,
)
from privlab.studies.reconstruction.weak import run_weak_adversary


def _suffix(section: StudyReport, run: Mapping[str, Any]) -> str:
    return f" (seed {run.get('seed')})" if len(runs_of(section)) > 1 else ""


@STUDIES.register("reconstruction")
class ReconstructionStudy(StudyBase):
    """Reconstruction of training data from released weights: the weak adversary's
    reconstructor over shadow heads, the informed adversary, ReRo bounds for DP-SGD, and a
    released (audited) model's own members in closed form."""

    name = "reconstruction"
    title = "Reconstruction from released weights"
    section = ReconstructionConfig
    order = 10

    def run(self, ctx: RunContext, cfg: ReconstructionConfig, seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        out: dict[str, Any] = {"seed": seed}
        if cfg.weak_adversary is not None:
            out["weak_adversary"] = run_weak_adversary(
                cfg.weak_adversary, seed, ctx.cache, ctx.state, ctx.progress, ctx.backend
            )
        if cfg.informed_adversary is not None:
            out["informed_adversary"] = run_informed_adversary(
                cfg.informed_adversary, seed, ctx.state, ctx.progress
            )
        if cfg.released_model is not None:
            out["released_model"] = run_released_model(
                cfg.released_model, seed, ctx.cache, ctx.state, ctx.progress
            )
        return out

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        return "\n".join(
            (f"<h3>seed{_suffix(section, run)}</h3>" if _suffix(section, run) else "")
            + html_section(run)
            for run in runs_of(section)
        )

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        tables = []
        for run in runs_of(section):
            for title, (header, rows) in (
                ("weak adversary (%)", weak_table(run)),
                ("informed adversary (%)", informed_table(run)),
                ("released model: closed-form reconstruction (%)", released_table(run)),
                ("released head: weak adversary (%)", released_weak_table(run)),
            ):
                if rows:
                    tables.append(TextTable(title + _suffix(section, run), header, rows))
        return tables

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        """How often a released model's training image is reconstructed, against the null."""
        lines = []
        for run in runs_of(section):
            suffix = _suffix(section, run)
            for v in (run.get("weak_adversary") or {}).get("variants") or []:
                if v.get("tpr") is None:
                    continue
                lines.append(
                    f"weak adversary {v.get('name')}{suffix}: {100 * v['tpr']:.1f} % of training "
                    "images reconstructed within τ (TPR*), against "
                    f"{100 * (v.get('fpr') or 0):.1f} % from null weights (FPR*)"
                )
            for r in (run.get("informed_adversary") or {}).get("reconnn") or []:
                if r.get("nn_oracle_success") is None:
                    continue
                init = "known" if r.get("known_init") else "unknown"
                lines.append(
                    f"informed adversary, initialisation {init}{suffix}: "
                    f"{100 * r['nn_oracle_success']:.0f} % of targets reconstructed"
                )
            lines += [line + suffix for line in released_lines(run)]
        return lines

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for v in (run.get("weak_adversary") or {}).get("variants") or []:
            out[f"weak {v.get('name')}"] = {
                "TPR": v.get("tpr"),
                "FPR": v.get("fpr"),
                "TPR@FPR=0.01": v.get("tpr_at_fpr_0.01"),
            }
        for r in (run.get("informed_adversary") or {}).get("reconnn") or []:
            init = "known" if r.get("known_init") else "unknown"
            out[f"informed RecoNN, init {init}"] = {
                "MSE": r.get("mse"),
                "NN-oracle success": r.get("nn_oracle_success"),
            }
        for r in (run.get("informed_adversary") or {}).get("dp") or []:
            if r.get("epsilon") is not None:  # the no-DP row is RecoNN's, above
                out[f"informed DP-SGD, ε = {r['epsilon']:g}"] = {
                    "MSE": r.get("mse"),
                    "NN-oracle success": r.get("nn_oracle_success"),
                    "ReRo γ": r.get("gamma"),
                }
        closed = (run.get("released_model") or {}).get("closed_form") or {}
        if closed.get("applicable"):
            out["released model, closed form"] = {
                "success": closed.get("success"),
                "labels correct": closed.get("labels_correct"),
                "median MSE": closed.get("mse_median"),
            }
        weak = (run.get("released_model") or {}).get("weak_adversary") or {}
        if weak.get("applicable"):
            out["released head, weak adversary"] = {
                "rate": (weak.get("released") or {}).get("rate"),
                "TPR*": weak.get("tpr"),
                "FPR*": weak.get("fpr"),
            }
        return out
