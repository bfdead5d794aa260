"""The targets study's report: its figures, the per-target aggregation over seeds and its
markdown summary, read from the study's flat view of a report."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from privlab.studies.targets.aggregate import aggregate_targets, markdown_summary
from privlab.studies.targets.figures import (
    advantage_bar_figure,
    loss_histogram_figure,
    roc_figure,
)
from privlab.studies.targets.study import TargetsStudy, flat_view
from sample_reports import PNG_SIGNATURE, SPLIT_HASHES, make_report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture(scope="module")
def view(report: dict[str, Any]) -> dict[str, Any]:
    return flat_view(report, report["studies"]["targets"])


def test_flat_view_lists_the_targets_of_every_seed_with_their_splits(view) -> None:
    assert view["seeds"] == [0, 1] and view["data"]["name"] == "digits"
    assert view["data"]["splits"]["1"]["sha256"] == SPLIT_HASHES
    names = [t["name"] for t in view["targets"]]
    assert names == ["pgd_at/seed0", "dp_sgd/seed0", "pgd_at/seed1", "dp_sgd/seed1"]


def test_figures_return_png(view: dict[str, Any]) -> None:
    target = view["targets"][0]
    for b64 in (roc_figure(target), loss_histogram_figure(target), advantage_bar_figure(view)):
        assert base64.b64decode(b64).startswith(PNG_SIGNATURE)
    empty = {"name": "x", "attacks": [{"label": "A", "roc": {"fpr": [0, 1], "tpr": [0]}}]}
    assert base64.b64decode(roc_figure(empty)).startswith(PNG_SIGNATURE)
    assert base64.b64decode(loss_histogram_figure({})).startswith(PNG_SIGNATURE)
    assert base64.b64decode(advantage_bar_figure({})).startswith(PNG_SIGNATURE)


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


def test_markdown_summary_on_report(view: dict[str, Any]) -> None:
    md = markdown_summary(view)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 2  # header, separator, pgd_at, dp_sgd
    assert "I_A A_inf" in lines[0] and "adv-test" in lines[0]
    assert lines[2].startswith("| pgd_at | 2 |") and "±" in lines[2]


def test_scalars_of_one_seed_are_the_numbers_runs_are_compared_on(report) -> None:
    run = report["studies"]["targets"]["runs"][1]
    scalars = TargetsStudy().scalars(run)
    assert list(scalars) == ["pgd_at", "dp_sgd"]  # by base name: comparable across seeds
    pgd = scalars["pgd_at"]
    assert pgd["test_acc"] == pytest.approx(0.94) and pgd["adv_test_acc"] == 0.7
    assert pgd["I_A accuracy"] == pytest.approx(0.601)
    assert pgd["I_A advantage"] == pytest.approx(0.202)
    assert pgd["I_L honest_accuracy"] == pytest.approx(0.611)
    assert pgd["I_B tpr@0.01"] == 0.05
    assert "ver_test_acc" not in pgd  # not measured: left out, not None


def test_markdown_stars_an_a_inf_that_does_not_clear_its_no_signal_level() -> None:
    def target(name: str, seed: int, acc: float) -> dict[str, Any]:
        metrics = {"accuracy": acc, "accuracy_null": {"mean": 0.518, "p95": 0.534}}
        return {
            "name": name,
            "base_name": name,
            "seed": seed,
            "utility": {"train_acc": 1.0, "test_acc": 0.9},
            "attacks": [{"label": "I_B", "metrics": metrics}],
        }

    md = markdown_summary({"targets": [target("leaky", 0, 0.60), target("quiet", 0, 0.53)]})
    assert "| 60.0 ± 0.0 |" in md and "| 53.0 ± 0.0* |" in md
    assert "* marks a mean A_inf not above its no-signal level" in md
