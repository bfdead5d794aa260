"""The precomputed-scores study (issue 14 part 4): scores, losses, logits or probabilities of
members and non-members from a file give the membership metrics and report without a model."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from privlab.cli import app
from privlab.config import ConfigError, load_config_dict
from privlab.registry import STUDIES
from privlab.studies.scores.config import ScoresConfig
from privlab.studies.scores.evaluate import evaluate, resolvable
from privlab.studies.scores.load import ScoresFileError, load_scores
from privlab.studies.scores.report import headline_line, metric_rows, run_html


def _normal(seed: int, n_in: int, n_out: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, n_in), rng.normal(0.0, 1.0, n_out)


def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _load(path: Path, **section: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = load_scores(ScoresConfig(file=str(path), **section))
    return scores.members, scores.nonmembers


# ------------------------------------------------------------------ metrics


def test_members_scoring_higher_give_the_known_auc() -> None:
    s_in, s_out = _normal(0, 2000, 2000, shift=1.0)
    result = evaluate(s_in, s_out)
    m = result["metrics"]
    labels = np.r_[np.ones(2000), np.zeros(2000)]
    assert m["auc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    # the binormal AUC of a unit shift is Φ(1/√2) ≈ 0.760
    assert m["auc"] == pytest.approx(0.760, abs=0.02)
    low, high = m["auc_ci"]
    assert low < m["auc"] < high and high - low < 0.05
    assert m["advantage_ci"][0] > 0.2  # a clear signal: the interval excludes 0
    assert result["n_members"] == result["n_nonmembers"] == 2000
    assert all(row["resolved"] for row in result["low_fpr"])  # 2000 ≥ 1000 non-members
    assert result["roc"]["fpr"][0] == 0.0 and result["roc"]["tpr"][-1] == 1.0
    assert np.all(np.diff(result["roc"]["tpr"]) >= 0)


def test_no_signal_gives_auc_one_half_and_an_advantage_interval_covering_zero() -> None:
    s_in, s_out = _normal(0, 1500, 1500, shift=0.0)
    m = evaluate(s_in, s_out)["metrics"]
    assert m["auc"] == pytest.approx(0.5, abs=0.03)
    assert m["auc_ci"][0] < 0.5 < m["auc_ci"][1]
    low, high = m["advantage_ci"]
    assert low <= 0.0 <= high
    assert low <= m["advantage"] <= high


def test_a_tpr_at_an_fpr_the_sample_cannot_resolve_is_flagged() -> None:
    s_in, s_out = _normal(2, 500, 500, shift=2.0)
    run = {"seed": 0, "file": "x.npz", "kind": "score", **evaluate(s_in, s_out)}
    rows = {row["fpr"]: row for row in run["low_fpr"]}
    assert not rows[0.001]["resolved"] and rows[0.001]["min_nonmembers"] == 1000
    assert rows[0.01]["resolved"] and rows[0.1]["resolved"]
    assert not resolvable(0.001, 999) and resolvable(0.001, 1000) and resolvable(0.01, 100)
    line = headline_line(run)
    assert "TPR at 0.1 % FPR unresolved (needs ≥ 1000 non-members)" in line
    assert "TPR at 1 % FPR" in line and "unresolved" not in line.split("TPR at 1 %")[1]
    table = dict((r[0], r[1]) for r in metric_rows(run))
    assert table["TPR at 0.1 % FPR"].startswith("unresolved")
    html = run_html(run)
    assert "unresolved" in html and html.count("<img") == 2


# ------------------------------------------------------------------ formats


def test_npz_scores_and_losses(tmp_path: Path) -> None:
    s_in, s_out = _normal(3, 50, 60, shift=1.0)
    m, n = _load(_npz(tmp_path / "s.npz", members=s_in, nonmembers=s_out))
    assert np.array_equal(m, s_in) and np.array_equal(n, s_out)
    m, n = _load(_npz(tmp_path / "l.npz", members=-s_in, nonmembers=-s_out), kind="loss")
    assert np.array_equal(m, s_in) and np.array_equal(n, s_out)  # loss → −loss
    m, _ = _load(tmp_path / "s.npz", higher_is_member=False)
    assert np.array_equal(m, -s_in)


def test_npz_logits_give_the_logit_scaled_true_class_confidence(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    logits_in, logits_out = rng.normal(size=(30, 5)), rng.normal(size=(40, 5))
    y_in, y_out = rng.integers(0, 5, 30), rng.integers(0, 5, 40)
    path = _npz(
        tmp_path / "logits.npz",
        members=logits_in,
        nonmembers=logits_out,
        members_labels=y_in,
        nonmembers_labels=y_out,
    )
    m, n = _load(path, kind="logits")
    p = np.exp(logits_in) / np.exp(logits_in).sum(axis=1, keepdims=True)
    p_y = p[np.arange(30), y_in]
    assert np.allclose(m, np.log(p_y) - np.log(1 - p_y))
    assert n.shape == (40,)
    # the same from probabilities, 2-d with labels and 1-d (the true class's probability)
    path = _npz(
        tmp_path / "p.npz",
        members=p,
        nonmembers=p[:10],
        members_labels=y_in,
        nonmembers_labels=y_in[:10],
    )
    m2, _ = _load(path, kind="probs")
    assert np.allclose(m2, m)
    m3, _ = _load(_npz(tmp_path / "p1.npz", members=p_y, nonmembers=p_y[:5]), kind="probs")
    assert np.allclose(m3, m)
    # extreme logits stay finite (no overflow in p_y, no log(0) in 1 − p_y)
    huge = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    path = _npz(
        tmp_path / "h.npz",
        members=huge,
        nonmembers=huge,
        members_labels=[0, 0],
        nonmembers_labels=[1, 0],
    )
    m4, _ = _load(path, kind="logits")
    assert np.allclose(m4, [1000.0, -1000.0])


def test_csv_scores_losses_and_logits(tmp_path: Path) -> None:
    rows = [[0.9, 1], [0.8, 1], [0.2, 0], [0.4, 0], [0.1, 0]]
    m, n = _load(_csv(tmp_path / "s.csv", ["score", "is_member"], rows))
    assert m.tolist() == [0.9, 0.8] and n.tolist() == [0.2, 0.4, 0.1]
    m, n = _load(
        _csv(tmp_path / "l.csv", ["is_member", "loss"], [r[::-1] for r in rows]), kind="loss"
    )
    assert m.tolist() == [-0.9, -0.8]
    header = ["c0", "c1", "y", "is_member"]
    path = _csv(tmp_path / "g.csv", header, [[2.0, 0.0, 0, 1], [0.0, 1.0, 0, 0]])
    m, n = _load(path, kind="logits", label_column="y")
    assert m == pytest.approx([2.0]) and n == pytest.approx([-1.0])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("make", "section", "message"),
    [
        (lambda d: d / "nope.npz", {}, "scores file not found"),
        (lambda d: _npz(d / "a.npz", members=[1.0, 2.0]), {}, "missing array(s) nonmembers"),
        (lambda d: _npz(d / "b.npz", members=[1.0, np.nan], nonmembers=[0.0]), {}, "NaN"),
        (lambda d: _npz(d / "c.npz", members=[1.0], nonmembers=np.zeros(0)), {}, "no examples"),
        (
            lambda d: _npz(d / "d.npz", members=np.ones((2, 3)), nonmembers=np.ones((2, 3))),
            {"kind": "logits"},
            "members_labels",
        ),
        (
            lambda d: _npz(
                d / "e.npz",
                members=[[0.5, 0.5]],
                nonmembers=[[0.2, 0.8]],
                members_labels=[2],
                nonmembers_labels=[0],
            ),
            {"kind": "probs"},
            "class indices in [0, 2)",
        ),
        (
            lambda d: _csv(d / "f.csv", ["loss", "is_member"], [[1, 1], [2, 0]]),
            {},
            "set kind: loss",
        ),
        (lambda d: _csv(d / "g.csv", ["score"], [[1], [2]]), {}, "no 'is_member' column"),
        (lambda d: _csv(d / "h.csv", ["score", "is_member"], [[1, 1], [2, 1]]), {}, "no examples"),
        (
            lambda d: _csv(d / "i.csv", ["score", "is_member"], [["x", 1], [2, 0]]),
            {},
            "not a number",
        ),
        (lambda d: _csv(d / "j.csv", ["score", "is_member"], [["nan", 1], [2, 0]]), {}, "NaN"),
        (lambda d: (d / "k.txt").write_text("1") and d / "k.txt", {}, "expected a .npz or .csv"),
        (lambda d: (d / "l.npz").write_text("junk") and d / "l.npz", {}, "not a readable .npz"),
    ],
)
def test_bad_input_is_one_error_naming_the_file(
    tmp_path: Path, make: Any, section: dict[str, Any], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ScoresFileError) as err:
        load_scores(ScoresConfig(file=str(path), **section))
    assert isinstance(err.value, ValueError)
    assert str(path) in str(err.value) and message in str(err.value)


def test_the_section_is_checked_key_by_key() -> None:
    with pytest.raises(ConfigError, match="higher_is_member"):
        load_config_dict({"scores": {"file": "x.npz", "kind": "logits", "higher_is_member": True}})
    with pytest.raises(ConfigError, match="unknown key 'scores.colum'"):
        load_config_dict({"scores": {"file": "x.npz", "colum": "a"}})
    assert "scores" in STUDIES.names()


# ------------------------------------------------------------------ CLI


def test_privlab_audit_scores_end_to_end(tmp_path: Path) -> None:
    s_in, s_out = _normal(5, 400, 600, shift=1.5)
    path = _npz(tmp_path / "scores.npz", members=-s_in, nonmembers=-s_out)
    out = tmp_path / "run"
    args = ["audit", "--scores", str(path), "--scores-kind", "loss", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "membership from precomputed scores" in result.output
    assert "unresolved" in result.output  # 600 non-members cannot resolve 0.1 % FPR
    report = json.loads((out / "report.json").read_text())
    (run,) = report["studies"]["scores"]["runs"]
    assert run["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    labels = np.r_[np.ones(400), np.zeros(600)]
    assert run["metrics"]["auc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]))
    assert (run["n_members"], run["n_nonmembers"], run["kind"]) == (400, 600, "loss")
    html = (out / "report.html").read_text()
    assert "Membership inference from precomputed scores" in html and "log-log" in html


def test_privlab_audit_without_scores_or_a_model_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--members", "m.npz", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--scores" in result.output and "missing --model, --nonmembers" in result.output
    bad = CliRunner().invoke(app, ["audit", "--scores", str(tmp_path / "none.npz")])
    assert bad.exit_code == 2 and "scores file not found" in bad.output


def test_privlab_audit_refuses_scores_together_with_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["audit", "--scores", str(tmp_path / "s.npz"), "--model", "net.py:Net"]
    )
    assert result.exit_code == 2 and "drop --model" in result.output
