"""Print every claim run in results/paper/ as markdown (mean ± std over seeds), for
docs/reproductions.md. Usage: .venv/bin/python benchmarks/summarize_paper_results.py"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from privlab.experiment.aggregate import aggregate_targets, format_pm, markdown_summary


def advantage_table(report: dict) -> str:
    """Per target and attack: advantage, honest accuracy and AUC (mean ± std, %)."""
    lines = [
        "| target | attack | advantage | honest A_inf | AUC | TPR@1% FPR |",
        "| --- | --- | --: | --: | --: | --: |",
    ]
    tpr: dict[tuple[str, str], list[float]] = {}
    for t in report["targets"]:
        for a in t["attacks"]:
            tpr.setdefault((t["base_name"], a["label"]), []).append(
                a["metrics"]["tpr_at_fpr"]["0.01"]
            )
    for row in aggregate_targets(report):
        for label, stats in row["attacks"].items():
            values = tpr.get((row["target"], label), [])
            mean_tpr = sum(values) / len(values) if values else None
            lines.append(
                f"| {row['target']} | {label} | {format_pm(stats['advantage'])} | "
                f"{format_pm(stats['honest_accuracy'])} | "
                f"{format_pm((stats['auc'][0], stats['auc'][1]))} | "
                f"{'—' if mean_tpr is None else f'{100 * mean_tpr:.1f}'} |"
            )
    return "\n".join(lines)


def main(root: Path = Path("results/paper")) -> None:
    for path in sorted(root.glob("*/report.json")):
        report = json.loads(path.read_text())
        print(f"## {path.parent.name}\n")
        print(markdown_summary(report))
        print(advantage_table(report) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/paper"))
