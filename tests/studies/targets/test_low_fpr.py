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
