"""Numbers in reports: finite floats, mean ± sample std, percent formatting, markdown."""

import pytest

from privlab.report.stats import as_float, format_pm, markdown_table, mean_std


def test_mean_std() -> None:
    assert mean_std([]) == (None, None)
    assert mean_std([0.5, None, float("nan")]) == (0.5, 0.0)
    m, s = mean_std([0.8, 0.9, 1.0])
    assert m == pytest.approx(0.9) and s == pytest.approx(0.1)


def test_as_float_format_pm_and_markdown_table() -> None:
    assert [as_float(x) for x in (1, "0.5", True, None, float("inf"), "x")] == [
        1.0,
        0.5,
        None,
        None,
        None,
        None,
    ]
    assert format_pm((0.95, 0.012)) == "95.0 ± 1.2" and format_pm((None, None)) == "—"
    assert markdown_table(["a", "b|c"], [["1", "x\ny"]]) == "| a | b\\|c |\n|---|---|\n| 1 | x y |"
