"""Tests for the HTML report renderer, its figures, and the multi-seed aggregation."""

from __future__ import annotations

import base64
import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from privlab.studies.targets.aggregate import aggregate_targets, markdown_summary, mean_std
from privlab.report.figures import advantage_bar_figure, loss_histogram_figure, roc_figure
from privlab.report.html import (
    comparison_table,
    render_comparison_html,
    render_html,
    write_html,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPLIT_HASHES = {"members": "1" * 64, "nonmembers": "2" * 64, "population": "3" * 64}
ATTACKS = [
    ("adversarial_confidence", "I_A"),
    ("benign_confidence", "I_B"),
    ("loss_threshold", "I_L"),
]


def _roc(rng: np.random.Generator, n: int = 60) -> dict[str, list[float]]:
    fpr = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, n)), [1.0]])
    tpr = np.maximum.accumulate(np.clip(fpr + rng.uniform(0, 0.2, fpr.size), 0, 1))
    tpr[0], tpr[-1] = 0.0, 1.0
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _hist(rng: np.random.Generator) -> dict[str, Any]:
    members = rng.dirichlet(np.linspace(5, 0.5, 40)).tolist()
    nonmembers = rng.dirichlet(np.linspace(0.5, 5, 40)).tolist()
    edges = np.linspace(-4, 1, 41).tolist()
    return dict(log10=True, bins=edges, members=members, nonmembers=nonmembers)


def _attack(rng: np.random.Generator, name: str, label: str, acc: float) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "family": "membership",
        "params": {},
        "seconds": 1.2,
        "n_eval": {"members": 599, "nonmembers": 599},
        "metrics": {
            "accuracy": acc,
            "advantage": 2 * (acc - 0.5),
            "auc": acc + 0.02,
            "threshold": 0.9,
            "tpr_at_fpr": {"0.1": 0.3, "0.01": 0.05, "0.001": 0.0},
            "tpr_at_fpr_ci": {"0.1": [0.25, 0.35], "0.01": [0.02, 0.08], "0.001": [0.0, 0.01]},
            "honest": dict(accuracy=acc - 0.01, advantage=2 * (acc - 0.51), source="shadow"),
        },
        "roc": _roc(rng),
    }


def _target(rng: np.random.Generator, base: str, seed: int, test_acc: float) -> dict[str, Any]:
    dp = base == "dp_sgd"
    return {
        "name": f"{base}/seed{seed}",
        "base_name": base,
        "seed": seed,
        "regime": base,
        "regime_params": {"eps": 0.1, "steps": 10},
        "model": {"name": "mlp", "params": {"hidden": [64]}},
        "model_sha256": "ab" * 32,
        "temperature": 1.0,
        "train_seconds": 3.2,
        "utility": dict(train_acc=1.0, test_acc=test_acc, adv_train_acc=0.9, adv_test_acc=0.7),
        "privacy": {"epsilon": 3.2, "delta": 1e-5, "accountant": "rdp"} if dp else {},
        "losses": _hist(rng),
        "attacks": [
            _attack(rng, name, label, 0.6 + 0.01 * i + 0.001 * seed)
            for i, (name, label) in enumerate(ATTACKS)
        ],
    }


def make_report(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    targets = [
        _target(rng, base, s, 0.95 - 0.01 * s) for base in ("pgd_at", "dp_sgd") for s in (0, 1)
    ]
    return {
        "schema_version": 1,
        "config": {"name": "robust-vs-natural", "description": "Song et al. Table 1 on digits."},
        "seed": 0,
        "seeds": [0, 1],
        "versions": {"privlab": "0.1.0", "python": "3.11.7", "torch": "2.13.0", "numpy": "2.1"},
        "device": "cpu",
        "timings": {"total_seconds": 12.3, "train_seconds": 8.0, "attack_seconds": 4.0},
        "data": {
            "name": "digits",
            "splits": {
                "0": dict(members=599, nonmembers=599, population=599, sha256=SPLIT_HASHES),
            },
        },
        "targets": targets,
    }


@pytest.fixture
def fast_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the (slow-ish) matplotlib figures by a tiny PNG for non-figure tests."""
    tiny = base64.b64encode(PNG_SIGNATURE).decode("ascii")
    for name in ("roc_figure", "loss_histogram_figure", "advantage_bar_figure"):
        monkeypatch.setattr(f"privlab.report.html.{name}", lambda _arg: tiny)


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


def test_render_html_embeds_png_images(page: str) -> None:
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 + 2 * 4  # advantage bars + (ROC, histogram) per target
    assert base64.b64decode(images[0]).startswith(PNG_SIGNATURE)


def test_render_html_has_no_external_references(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_render_html_escapes_report_strings(report: dict[str, Any], fast_figures: None) -> None:
    bad = copy.deepcopy(report)
    bad["config"]["name"] = "<script>alert(1)</script>"
    bad["config"]["description"] = 'a "quoted" & <b>bold</b>'
    bad["targets"][0]["name"] = "<script>alert(1)</script>"
    bad["targets"][0]["attacks"][0]["label"] = "<img src=x onerror=alert(1)>"
    out = render_html(bad)
    assert "<script>" not in out and "<img src=x" not in out and "<b>bold</b>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&amp; &lt;b&gt;bold&lt;/b&gt;" in out


def test_render_html_tolerates_missing_optional_keys(report: dict[str, Any]) -> None:
    sparse = copy.deepcopy(report)
    t0, t1, t2, t3 = sparse["targets"]
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
    for key in ("versions", "timings", "data", "seeds", "device"):
        sparse.pop(key)
    out = render_html(sparse)
    assert "—" in out and "honest —" in out
    assert not re.search(r"\bnan\b", re.sub(r"base64,[^\"]*", "", out), re.I)
    assert render_html({}).count("<html") == 1
    no_attacks = copy.deepcopy(report)
    for t in no_attacks["targets"]:
        t["attacks"] = []
        t["losses"] = {"bins": [0, 1], "members": [1.0, 2.0], "nonmembers": [0.5]}  # malformed
    assert "no attacks were run" in render_html(no_attacks)


def test_figures_return_png(report: dict[str, Any]) -> None:
    target = report["targets"][0]
    for b64 in (roc_figure(target), loss_histogram_figure(target), advantage_bar_figure(report)):
        assert base64.b64decode(b64).startswith(PNG_SIGNATURE)
    empty = {"name": "x", "attacks": [{"label": "A", "roc": {"fpr": [0, 1], "tpr": [0]}}]}
    assert base64.b64decode(roc_figure(empty)).startswith(PNG_SIGNATURE)
    assert base64.b64decode(loss_histogram_figure({})).startswith(PNG_SIGNATURE)
    assert base64.b64decode(advantage_bar_figure({})).startswith(PNG_SIGNATURE)


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

    monkeypatch.setattr("privlab.run.store.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_html(make_report(), path)
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_mean_std() -> None:
    assert mean_std([]) == (None, None)
    assert mean_std([0.5, None, float("nan")]) == (0.5, 0.0)
    m, s = mean_std([0.8, 0.9, 1.0])
    assert m == pytest.approx(0.9) and s == pytest.approx(0.1)


def test_aggregate_targets_hand_set_numbers() -> None:
    def target(base: str, seed: int, test: float, acc: float | None) -> dict[str, Any]:
        honest = {"accuracy": acc - 0.1} if acc is not None else None
        return {
            "name": f"{base}/seed{seed}",
            "base_name": base,
            "seed": seed,
            "utility": {"train_acc": 1.0, "test_acc": test, "adv_test_acc": None},
            "attacks": [
                {"label": "I_A", "metrics": {"accuracy": acc, "advantage": None, "honest": honest}}
            ],
        }

    rep = {
        "targets": [
            target("natural", 0, 0.90, 0.60),
            target("robust", 0, 0.80, 0.70),
            target("natural", 1, 0.92, 0.64),
            target("natural", 2, 0.94, 0.62),
            target("robust", 1, 0.84, None),
        ]
    }
    rows = aggregate_targets(rep)
    assert [r["target"] for r in rows] == ["natural", "robust"]
    nat, rob = rows
    assert nat["n"] == 3 and nat["seeds"] == [0, 1, 2]
    assert nat["test_acc"][0] == pytest.approx(0.92)
    assert nat["test_acc"][1] == pytest.approx(0.02)
    assert nat["train_acc"] == (1.0, 0.0)
    assert nat["adv_test_acc"] == (None, None) and nat["adv_train_acc"] == (None, None)
    a = nat["attacks"]["I_A"]
    assert a["accuracy"][0] == pytest.approx(0.62) and a["accuracy"][1] == pytest.approx(0.02)
    assert a["honest_accuracy"][0] == pytest.approx(0.52)
    assert a["advantage"] == (None, None)
    assert rob["test_acc"][1] == pytest.approx(math.sqrt(0.0008))
    assert rob["attacks"]["I_A"]["accuracy"] == (0.7, 0.0)  # the None seed is skipped

    md = markdown_summary(rep)
    assert "±" in md
    assert "| natural | 3 | 100.0 ± 0.0 | 92.0 ± 2.0 | — | — | — | — | 62.0 ± 2.0 |" in md


def test_markdown_summary_on_report(report: dict[str, Any]) -> None:
    md = markdown_summary(report)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 2  # header, separator, pgd_at, dp_sgd
    assert "I_A A_inf" in lines[0] and "adv-test" in lines[0]
    assert lines[2].startswith("| pgd_at | 2 |") and "±" in lines[2]


def test_comparison_table_and_html(report: dict[str, Any]) -> None:
    other = copy.deepcopy(report)
    other["targets"] = other["targets"][:1]
    other["targets"][0]["attacks"] = other["targets"][0]["attacks"][:1]
    rows = comparison_table([("run-a", report), ("run-b", other)])
    assert len(rows) == 5
    assert len({tuple(r) for r in rows}) == 1  # all rows share the same columns
    first = rows[0]
    assert first["run"] == "run-a" and first["target"] == "pgd_at/seed0" and first["seed"] == 0
    assert first["test_acc"] == pytest.approx(0.95) and first["adv_test_acc"] == 0.7
    assert first["I_A/accuracy"] == pytest.approx(0.6)
    assert first["I_A/advantage"] == pytest.approx(0.2)
    assert first["I_A/tpr@1%"] == 0.05 and first["I_L/auc"] == pytest.approx(0.64)
    assert rows[-1]["run"] == "run-b" and rows[-1]["I_B/accuracy"] is None

    out = render_comparison_html([("run-a", report), ("<b>run-b</b>", other)])
    assert out.startswith("<!DOCTYPE html>") and "&lt;b&gt;run-b&lt;/b&gt;" in out
    assert "pgd_at/seed0" in out and "60.0%" in out and "http" not in out
