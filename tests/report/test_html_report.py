"""The report page (one self-contained HTML document for any report), its atomic writing, the
schema-1 upgrade, and the comparison of runs (mean ± std over seeds, per study)."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import pytest

from privlab.report.compare import (
    comparison_markdown,
    comparison_tables,
    markdown_report,
    render_comparison_html,
)
from privlab.report.html import render_html, write_html
from privlab.report.schema import ReportError, upgrade
from sample_reports import PNG_SIGNATURE, SPLIT_HASHES, as_schema_1, make_report, targets_in


@pytest.fixture
def fast_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the (slow-ish) matplotlib figures by a tiny PNG for non-figure tests."""
    tiny = base64.b64encode(PNG_SIGNATURE).decode("ascii")
    for name in ("roc_figure", "loss_histogram_figure", "advantage_bar_figure"):
        monkeypatch.setattr(f"privlab.studies.targets.html.{name}", lambda _arg: tiny)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture(scope="module")
def page(report: dict[str, Any]) -> str:
    return render_html(report)


def test_render_html_is_single_document_with_values(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1
    assert "robust-vs-natural" in page and "Song et al. Table 1 on digits." in page
    for value in ("95.0%", "94.0%", "90.0%", "70.0%", "100.0%"):  # utility
        assert value in page
    assert "60.0%" in page and "(20.0%)" in page  # I_A seed0: A_inf (advantage)
    assert "honest 59.0%" in page
    assert "AUC 0.620" in page
    assert "ε=3.2, δ=1e-5" in page
    assert "25.0% – 35.0%" in page  # Clopper–Pearson tooltip
    assert "1" * 64 in page and "ab" * 32 in page  # data and model hashes
    for label in ("I_A", "I_B", "I_L", "pgd_at/seed1", "dp_sgd/seed0"):
        assert label in page
    assert "About the numbers" in page and "2&middot;(A<sub>inf</sub> &minus; 0.5)" in page
    assert "Summary over seeds" in page  # two seeds: mean ± std per target


def test_render_html_embeds_png_images(page: str) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 + 3 * 4  # advantage bars + (log ROC, linear ROC, histogram) per target
    assert base64.b64decode(images[0]).startswith(PNG_SIGNATURE)


def test_render_html_has_no_external_references(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_render_html_escapes_report_strings(report: dict[str, Any], fast_figures: None) -> None:
    bad = copy.deepcopy(report)
    bad["config"]["name"] = "<script>alert(1)</script>"
    bad["config"]["description"] = 'a "quoted" & <b>bold</b>'
    targets_in(bad)[0]["name"] = "<script>alert(1)</script>"
    targets_in(bad)[0]["attacks"][0]["label"] = "<img src=x onerror=alert(1)>"
    out = render_html(bad)
    assert "<script>" not in out and "<img src=x" not in out and "<b>bold</b>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in out


def test_render_html_tolerates_missing_optional_keys(report: dict[str, Any]) -> None:
    sparse = copy.deepcopy(report)
    t0, t1, t2, t3 = targets_in(sparse)
    del t0["losses"]
    t0["utility"]["adv_train_acc"] = None
    t0["attacks"][0]["metrics"]["honest"] = None
    del t0["attacks"][1]["metrics"]["honest"]
    del t0["attacks"][2]["roc"]
    t1["attacks"] = []
    t2["privacy"] = None
    t2["attacks"][0]["metrics"] = {"accuracy": None, "auc": float("nan")}
    for key in ("temperature", "model", "regime_params", "model_sha256"):
        t3.pop(key)
    for key in ("versions", "timings", "seeds", "device"):
        sparse.pop(key)
    for run in sparse["studies"]["targets"]["runs"]:
        run.pop("data")
    out = render_html(sparse)
    assert "—" in out and "honest —" in out
    assert not re.search(r"\bnan\b", re.sub(r"base64,[^\"]*", "", out), re.I)
    # no study at all, or one this privlab does not know: still one page, the study named
    assert render_html({"schema_version": 2, "studies": {}}).count("<html") == 1
    unknown = render_html({"schema_version": 2, "studies": {"future_study": {"runs": []}}})
    assert unknown.count("<html") == 1 and "future_study" in unknown
    no_attacks = copy.deepcopy(report)
    for t in targets_in(no_attacks):
        t["attacks"] = []
        t["losses"] = {"bins": [0, 1], "members": [1.0, 2.0], "nonmembers": [0.5]}  # malformed
    assert "no attacks were run" in render_html(no_attacks)


def test_render_html_refuses_what_is_not_a_report() -> None:
    with pytest.raises(ReportError, match="no schema_version"):
        render_html({})
    with pytest.raises(ReportError, match="schema_version 99"):
        render_html({"schema_version": 99, "studies": {}})


def test_a_schema_1_report_is_upgraded_and_renders_the_same(
    report: dict[str, Any], page: str
) -> None:
    old = as_schema_1(report)
    old["config"] = {**old["config"], "data": {"name": "digits"}, "targets": []}  # old layout
    new = upgrade(copy.deepcopy(old))
    assert new["schema_version"] == 2 and new["upgraded_from"] == 1
    assert new["config"]["targets"] == {"data": {"name": "digits"}, "targets": []}
    runs = new["studies"]["targets"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert runs[1]["data"] == report["studies"]["targets"]["runs"][1]["data"]
    assert [t["name"] for t in runs[0]["targets"]] == ["pgd_at/seed0", "dp_sgd/seed0"]
    assert runs == report["studies"]["targets"]["runs"]
    assert render_html(old).split("<details>")[0] == page.split("<details>")[0]


def test_write_html_is_atomic(tmp_path: Path, report: dict[str, Any], fast_figures: None) -> None:
    path = tmp_path / "out" / "report.html"
    write_html(report, path)
    write_html(report, path)  # overwrite in place
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_write_html_leaves_no_temp_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_figures: None
) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("privlab.run.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_html(make_report(), path)
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_comparison_tables_and_html(report: dict[str, Any]) -> None:
    other = copy.deepcopy(report)
    other["studies"]["targets"]["runs"] = other["studies"]["targets"]["runs"][:1]
    first = other["studies"]["targets"]["runs"][0]
    first["targets"] = first["targets"][:1]
    first["targets"][0]["attacks"] = first["targets"][0]["attacks"][:1]
    ((title, header, rows),) = comparison_tables([("run-a", report), ("run-b", other)])
    assert title.startswith("Trained targets")
    assert header[:3] == ["run", "row", "n"]
    assert len(rows) == 3  # run-a: pgd_at, dp_sgd; run-b: pgd_at
    assert all(len(r) == len(header) for r in rows)  # all rows share the same columns
    cell = {(r[0], r[1], h): c for r in rows for h, c in zip(header, r, strict=True)}
    assert cell["run-a", "pgd_at", "n"] == "2" and cell["run-b", "pgd_at", "n"] == "1"
    # mean ± sample std over seeds 0 and 1: test 0.95 / 0.94, I_A accuracy 0.600 / 0.601
    assert cell["run-a", "pgd_at", "test_acc"] == "0.945 ± 0.0071"
    assert cell["run-a", "pgd_at", "adv_test_acc"] == "0.7"
    assert cell["run-a", "pgd_at", "I_A accuracy"] == "0.6005 ± 0.00071"
    assert cell["run-a", "pgd_at", "I_A advantage"] == "0.201 ± 0.0014"
    assert cell["run-a", "pgd_at", "I_A tpr@0.01"] == "0.05"
    assert cell["run-a", "pgd_at", "I_L auc"] == "0.6405 ± 0.00071"
    assert cell["run-b", "pgd_at", "test_acc"] == "0.95"
    assert cell["run-b", "pgd_at", "I_A accuracy"] == "0.6"
    assert cell["run-b", "pgd_at", "I_B accuracy"] == "—"

    md = comparison_markdown([("run-a", report), ("run-b", other)])
    assert "### Trained targets" in md and "| run-a | pgd_at | 2 |" in md and "0.945 ± 0.0071" in md

    out = render_comparison_html([("run-a", report), ("<b>run-b</b>", other)])
    assert out.startswith("<!DOCTYPE html>") and "&lt;b&gt;run-b&lt;/b&gt;" in out
    assert "pgd_at" in out and "0.6005 ± 0.00071" in out and "http" not in out


def test_markdown_report_has_every_target_of_every_seed(report: dict[str, Any]) -> None:
    md = markdown_report(report)
    assert "robust-vs-natural: membership inference accuracy" in md
    for name in ("pgd_at/seed0", "dp_sgd/seed0", "pgd_at/seed1", "dp_sgd/seed1"):
        assert f"| {name} | 100.0 | 95.0 |" in md or f"| {name} | 100.0 | 94.0 |" in md
    assert "60.0/59.0" in md  # I_A at seed 0: worst-case / honest accuracy
    assert SPLIT_HASHES["members"] not in md
