"""A TPR at an FPR the sample of non-members cannot resolve is flagged, not printed as a
measurement; resolved ones carry their Clopper–Pearson interval."""

from __future__ import annotations

from privlab.studies.targets.aggregate import low_fpr_text, resolves


def test_resolution_needs_one_over_fpr_non_members() -> None:
    assert resolves(0.001, 1000) and not resolves(0.001, 999)
    assert resolves(0.01, 100) and not resolves(0.01, 99)
    assert resolves(0.001, None)  # a report that does not record the count is not judged


def test_the_low_fpr_reading_flags_what_it_cannot_resolve() -> None:
    metrics = {
        "n_nonmembers": 599,
        "tpr_at_fpr": {"0.01": 0.02, "0.001": 0.0},
        "tpr_at_fpr_ci": {"0.01": [0.0104, 0.0347], "0.001": [0.0, 0.0061]},
    }
    text = low_fpr_text(metrics)
    assert "TPR 2.0 % (95 % CI 1.0–3.5) at 1 % FPR" in text
    assert "0.1 % FPR not resolved by 599 non-members" in text
    assert "TPR 0.0" not in text  # the unresolved rate is not printed as if measured


def test_a_bound_below_one_tenth_of_a_percent_is_not_printed_as_zero() -> None:
    """10,000 members, none above the threshold: the interval's upper bound is 0.037 %, not
    "0.0" (which would read as a certainty that nothing leaks)."""
    metrics = {
        "n_nonmembers": 10000,
        "tpr_at_fpr": {"0.01": 0.0, "0.001": 0.0},
        "tpr_at_fpr_ci": {"0.01": [0.0, 0.00037], "0.001": [0.0, 0.00037]},
    }
    text = low_fpr_text(metrics)
    assert "TPR 0.0 % (95 % CI 0.0–0.037) at 1 % FPR" in text
    assert "0.0–0.0)" not in text


def test_the_html_report_shows_small_rates_and_bounds_to_two_significant_digits() -> None:
    from privlab.report.html_format import DASH, rate

    assert rate(0.00037) == "0.037%" and rate(0.02) == "2.0%" and rate(0.0) == "0.0%"
    assert rate(None) == DASH
