"""The precomputed-scores study (issue 14): membership metrics and report from per-example
scores, losses, logits or probabilities of members and non-members, for models that live
outside PyTorch — no model is loaded or trained."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privlab.registry import STUDIES
from privlab.run.context import RunContext, Stopwatch
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of
from privlab.studies.scores.config import ScoresConfig
from privlab.studies.scores.evaluate import evaluate
from privlab.studies.scores.load import file_sha256, load_scores
from privlab.studies.scores.report import (
    HEADLINE_FPRS,
    auc_text,
    headline_line,
    run_html,
    tpr_text,
)


def _titled(section: StudyReport) -> list[tuple[str, Mapping[str, Any]]]:
    runs = runs_of(section)
    return [(f" (seed {r.get('seed')})" if len(runs) > 1 else "", r) for r in runs]


@STUDIES.register("scores")
class ScoresStudy(StudyBase):
    """Membership metrics of precomputed per-example scores, losses, logits or probabilities
    (no model needed): AUC, advantage and TPR at low FPR with 95 % intervals."""

    name = "scores"
    title = "Membership inference from precomputed scores"
    section = ScoresConfig
    order = 5

    def check(self, cfg: ScoresConfig, ctx: RunContext) -> None:
        load_scores(cfg)  # a bad file is refused before any other study runs

    def run(self, ctx: RunContext, cfg: ScoresConfig, seed: int) -> dict[str, Any]:
        path = Path(cfg.file)
        key = {"sha256": file_sha256(path) if path.is_file() else None, **cfg.model_dump()}

        def compute() -> dict[str, Any]:
            scores = load_scores(cfg)
            return {
                "file": str(path),
                "sha256": scores.sha256,
                "format": scores.format,
                "kind": cfg.kind,
                **evaluate(scores.members, scores.nonmembers),
            }

        with Stopwatch(ctx, "scores"):
            result = ctx.state.get_or_run("scores", key, compute)
        return {"seed": seed, **result}

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        return "\n".join(
            (f"<h3>seed{title}</h3>" if title else "") + run_html(run)
            for title, run in _titled(section)
        )

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        tables = []
        for suffix, run in _titled(section):
            rows = [["AUC", auc_text(run)]]
            rows += [[f"TPR at {100 * f:g} % FPR", tpr_text(run, f)] for f in HEADLINE_FPRS]
            notes = [
                f"{run.get('file')}: {run.get('n_members')} members, "
                f"{run.get('n_nonmembers')} non-members ({run.get('kind')})"
            ]
            tables.append(
                TextTable(
                    f"membership from precomputed scores{suffix}",
                    ["metric", "value [95 % interval]"],
                    rows,
                    notes,
                )
            )
        return tables

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        return [
            f"precomputed scores{suffix}: {headline_line(run)}" for suffix, run in _titled(section)
        ]

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        m = run.get("metrics") or {}
        return {
            "scores": {
                "auc": m.get("auc"),
                "advantage": m.get("advantage"),
                "tpr@0.01": (m.get("tpr_at_fpr") or {}).get("0.01"),
            }
        }
