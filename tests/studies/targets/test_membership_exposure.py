"""The most exposed members (studies/targets/membership.exposure): pixels for small images,
named attributes for 1-D inputs (one-hot groups decoded), and their table in the HTML report
and on the console."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from privlab.data.bundle import Split
from privlab.studies.targets.console import exposed_text_tables
from privlab.studies.targets.figures import exposed_records
from privlab.studies.targets.html import targets_html
from privlab.studies.targets.membership import UNNAMED_FEATURES, exposure

NAMES = ("age", "hours", "sex=Female", "sex=Male", "work=?", "work=Private", "work=State")


def _tabular() -> Split:
    x = torch.tensor(
        [
            [0.123456, -1.5, 1, 0, 0, 1, 0],
            [2.0, 0.333333, 0, 1, 0, 0, 1],
            [-0.5, 12345.678, 0, 1, 1, 0, 0],
        ]
    )
    return Split(x, torch.tensor([0, 1, 1]))


def test_tabular_members_are_recorded_as_named_attributes() -> None:
    s_in, s_out = np.array([0.2, 0.9, 0.5]), np.array([0.1, 0.6, 0.95, 0.3])
    rows = exposure(s_in, s_out, _tabular(), top=2, feature_names=NAMES)
    assert [r["index"] for r in rows] == [1, 2]  # highest scores first
    assert rows[0]["fpr"] == 0.25 and rows[1]["fpr"] == 0.5  # non-members scoring as high
    assert rows[0]["features"] == {"age": 2.0, "hours": 0.3333, "sex": "Male", "work": "State"}
    assert rows[1]["features"] == {"age": -0.5, "hours": 12350.0, "sex": "Male", "work": "?"}
    assert "pixels" not in rows[0]


def test_without_names_narrow_inputs_are_numbered_and_wide_ones_left_out() -> None:
    s = np.array([0.3, 0.1, 0.2])
    (row,) = exposure(s, s, _tabular(), top=1)
    assert list(row["features"]) == [f"x{j}" for j in range(7)]
    assert row["features"]["x4"] == 0.0 and row["features"]["x0"] == 0.1235
    # names that do not fit the inputs are not used
    (row,) = exposure(s, s, _tabular(), top=1, feature_names=NAMES[:3])
    assert "x6" in row["features"]
    wide = Split(torch.zeros(2, UNNAMED_FEATURES + 1), torch.tensor([0, 1]))
    (row,) = exposure(np.array([1.0, 0.0]), np.array([0.5]), wide, top=1)
    assert "features" not in row and "pixels" not in row


def test_small_images_keep_their_pixels() -> None:
    images = Split(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2]))
    (row,) = exposure(np.array([0.1, 0.3, 0.2]), np.array([0.0]), images, top=1)
    assert np.array(row["pixels"]).shape == (1, 4, 4) and "features" not in row


def _target(exposed: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = {"accuracy": 0.6, "advantage": 0.2, "auc": 0.62, "tpr_at_fpr": {"0.01": 0.03}}
    attack = {"name": "loss_threshold", "label": "I_L", "metrics": metrics, "exposed": exposed}
    return {"name": "audited model", "seed": 0, "attacks": [attack], "utility": {}}


def test_the_records_table_in_html_and_on_the_console() -> None:
    rows = exposure(np.array([0.2, 0.9, 0.5]), np.array([0.1, 0.6]), _tabular(), 3, NAMES)
    view = {"targets": [_target(rows)]}
    label, header, cells = exposed_records(view["targets"][0]) or ("", [], [])
    assert label == "I_L"
    assert header == ["index", "label", "score", "FPR", "age", "hours", "sex", "work"]
    assert cells[0] == ["1", "1", "0.9", "0", "2", "0.3333", "Male", "State"]
    assert cells[2][-4:] == ["0.1235", "-1.5", "Female", "Private"]
    html = targets_html(view)
    assert "most exposed training records" in html and "<th>work</th>" in html
    assert "most exposed training points" not in html  # no images to draw
    (table,) = exposed_text_tables(view)
    assert table.title == "most exposed training records of audited model (I_L)"
    assert table.header == header and table.rows == cells


def test_images_get_the_figure_and_no_records_table() -> None:
    images = Split(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
    view = {"targets": [_target(exposure(np.array([0.1, 0.3]), np.array([0.0]), images))]}
    assert exposed_records(view["targets"][0]) is None and exposed_text_tables(view) == []
    html = targets_html(view)
    assert "most exposed training points" in html
    assert "most exposed training records" not in html
