"""A run of several seeds shows its studies' scalars as mean ± std over them (console,
markdown, HTML), unless the study summarises its seeds itself."""

from __future__ import annotations

import statistics
from typing import Any

from privlab.report.compare import markdown_report
from privlab.report.console import study_tables
from privlab.report.html import render_html
from privlab.report.seeds import format_stat, seeds_table, study_stats
from sample_reports import make_report


def _weak_run(seed: int, tpr: float, fpr: float) -> dict[str, Any]:
    variant = {"name": "N=10", "tpr": tpr, "fpr": fpr, "tpr_at_fpr_0.01": 0.1}
    return {"seed": seed, "weak_adversary": {"variants": [variant]}}


def _report(*runs: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 2,
        "config": {"name": "weak"},
        "seeds": [r["seed"] for r in runs],
        "studies": {"reconstruction": {"runs": list(runs)}},
    }


def test_the_mean_and_sample_std_over_the_seeds_are_computed_per_row_and_metric():
    tprs, fprs = [0.42, 0.38, 0.51], [0.05, 0.06, 0.04]
    report = _report(*(_weak_run(s, t, f) for s, (t, f) in enumerate(zip(tprs, fprs, strict=True))))
    stats = study_stats(report, "reconstruction")["weak N=10"]
    assert stats["n"] == 3
    assert abs(stats["TPR"][0] - statistics.mean(tprs)) < 1e-12
    assert abs(stats["TPR"][1] - statistics.stdev(tprs)) < 1e-12
    table = seeds_table(report, "reconstruction")
    assert table is not None and "over 3 seeds" in table.title
    assert table.header == ["row", "n", "TPR", "FPR", "TPR@FPR=0.01"]
    (row,) = table.rows
    assert row[:3] == [
        "weak N=10",
        "3",
        f"{statistics.mean(tprs):.4g} ± {statistics.stdev(tprs):.2g}",
    ]
    assert row[4] == "0.1"  # equal in every seed: no ± 0


def test_the_table_shows_in_the_console_markdown_and_html_only_for_several_seeds():
    two = _report(_weak_run(0, 0.4, 0.05), _weak_run(1, 0.5, 0.07))
    one = _report(_weak_run(0, 0.4, 0.05))
    title = "mean ± std over 2 seeds"
    assert any(title in t.title for t in study_tables(two))
    assert title in markdown_report(two) and title in render_html(two)
    assert seeds_table(one, "reconstruction") is None
    assert "mean ± std over" not in markdown_report(one) + render_html(one)


def test_a_study_that_summarises_its_seeds_gets_no_second_table():
    report = make_report()
    runs = report["studies"]["targets"]["runs"]
    report["studies"]["targets"]["runs"] = [runs[0], {**runs[0], "seed": 1}]
    report["seeds"] = [0, 1]
    assert seeds_table(report, "targets") is None


def test_rounding_noise_is_not_shown_as_a_spread():
    assert format_stat((0.0037723, 5.3e-19)) == "0.003772"
    assert format_stat((0.5, 0.1)) == "0.5 ± 0.1"
    assert format_stat((None, None)) == "—"
