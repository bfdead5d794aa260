"""Plain-language readings against the documented levels (docs/levels.md): every level reached
by constructed numbers, intervals missing or recomputed, unresolvable FPRs flagged rather than
read, and more leakage never read as milder."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privlab.report import levels
from privlab.report.levels import (
    Level,
    gradient_level,
    gradient_reading,
    hanley_mcneil,
    membership_level,
    membership_reading,
    reconstruction_level,
    reconstruction_reading,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "levels.md"


def metrics(
    auc: float | None = 0.5,
    auc_ci: tuple[float, float] | None = (0.45, 0.55),
    tpr: dict[float, tuple[float, float, float]] | None = None,
    n: int | None = 10_000,
) -> dict[str, Any]:
    """A report's metrics of one attack: ``tpr`` maps an FPR to (TPR, CI low, CI high)."""
    tpr = {0.01: (0.01, 0.008, 0.012), 0.001: (0.001, 0.0005, 0.002)} if tpr is None else tpr
    out: dict[str, Any] = {
        "auc": auc,
        "tpr_at_fpr": {str(f): v[0] for f, v in tpr.items()},
        "tpr_at_fpr_ci": {str(f): [v[1], v[2]] for f, v in tpr.items()},
    }
    if auc_ci is not None:
        out["auc_ci"] = list(auc_ci)
    if n is not None:
        out |= {"n_members": n, "n_nonmembers": n}
    return out


def test_chance_reads_as_no_measurable_leakage() -> None:
    m = metrics()
    assert membership_level(m) == Level.NONE
    text = membership_reading(m)
    assert text.startswith("no measurable leakage: the AUC's interval includes 0.5 and TPR at")
    assert "within its interval of the FPR" in text and "AUC 0.500 (95 % CI 0.450–0.550)" in text


def test_better_than_chance_but_weak_reads_as_low() -> None:
    by_auc = metrics(auc=0.54, auc_ci=(0.52, 0.56))
    by_tpr = metrics(tpr={0.01: (0.02, 0.015, 0.026)})
    for m in (by_auc, by_tpr):
        assert membership_level(m) == Level.LOW
        assert membership_reading(m).startswith("low leakage: measurably better than chance")


def test_a_threshold_flagging_members_three_times_as_often_reads_as_moderate() -> None:
    m = metrics(auc=0.58, auc_ci=(0.56, 0.60 - 1e-9), tpr={0.01: (0.05, 0.04, 0.061)})
    assert membership_level(m) == Level.MODERATE
    text = membership_reading(m)
    assert text.startswith("moderate leakage: a threshold identifies 5.0 % of members at 1 % FPR")
    assert "(5.0× the false-positive rate, at least 4.0× with 95 % confidence)" in text


def test_an_auc_bound_above_the_cut_off_reads_as_moderate_but_never_high() -> None:
    m = metrics(auc=0.99, auc_ci=(0.98, 1.0))
    assert membership_level(m) == Level.MODERATE
    assert "members outrank non-members" in membership_reading(m)


def test_a_tenfold_likelihood_ratio_at_low_fpr_reads_as_high() -> None:
    m = metrics(auc=0.7, auc_ci=(0.68, 0.72), tpr={0.001: (0.012, 0.0101, 0.014)})
    assert membership_level(m) == Level.HIGH
    text = membership_reading(m)
    assert text.startswith("high leakage: a threshold identifies 1.2 % of members at 0.1 % FPR")
    assert "12× the false-positive rate, at least 10×" in text
    # the strongest low FPR decides, whichever it is
    both = metrics(tpr={0.01: (0.2, 0.19, 0.21), 0.001: (0.002, 0.001, 0.004)})
    assert membership_level(both) == Level.HIGH and "at 1 % FPR (20×" in membership_reading(both)


def test_an_unresolvable_fpr_is_flagged_not_read() -> None:
    # 500 non-members cannot measure 0.1 % FPR: the spectacular TPR there is not read
    m = metrics(tpr={0.01: (0.01, 0.004, 0.02), 0.001: (0.5, 0.45, 0.55)}, n=500)
    assert membership_level(m) == Level.NONE
    assert "TPR at 0.1 % FPR cannot be resolved with 500 non-members" in membership_reading(m)
    few = metrics(auc=0.8, auc_ci=(0.7, 0.9), tpr={0.01: (0.9, 0.8, 0.95)}, n=50)
    assert membership_level(few) == Level.MODERATE  # from the AUC alone
    assert membership_reading(few).count("cannot be resolved with 50 non-members") == 2
    # an unknown count of non-members is not flagged
    unknown = metrics(tpr={0.001: (0.05, 0.04, 0.06)}, n=None)
    assert membership_level(unknown) == Level.HIGH


def test_missing_intervals_are_recomputed_or_said_to_be_missing() -> None:
    # no AUC interval: Hanley & McNeil's from the sample sizes, called approximate
    m = metrics(auc=0.52, auc_ci=None, n=100)
    assert membership_level(m) == Level.NONE and "approximate 95 % CI" in membership_reading(m)
    m = metrics(auc=0.52, auc_ci=None, n=100_000)
    assert membership_level(m) == Level.LOW
    # no TPR interval: Clopper–Pearson's from the members' count
    m = metrics(tpr={0.01: (0.05, 0.05, 0.05)}) | {"tpr_at_fpr_ci": {}}
    assert membership_level(m) == Level.MODERATE
    assert "(95 % CI 4.6–5.4 %) at 1 % FPR" in membership_reading(m)
    # neither interval nor counts: the point estimates, said to have no interval
    bare = {"auc": 0.51, "tpr_at_fpr": {"0.01": 0.012}}
    assert membership_level(bare) == Level.LOW
    text = membership_reading(bare)
    assert "AUC 0.510 (no interval)" in text and "TPR 1.2 % (no interval)" in text
    assert membership_level({}) is None
    assert membership_reading({}).startswith("no reading")
    assert membership_level({"auc": 0.5}) == Level.NONE
    assert "the AUC is not above 0.5" in membership_reading({"auc": 0.5})


def test_hanley_mcneil_at_chance_is_the_mann_whitney_null() -> None:
    m, n = 300, 500
    lo, hi = hanley_mcneil(0.5, m, n)
    half = levels.Z95 * math.sqrt((m + n + 1) / (12 * m * n))
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half))
    assert hanley_mcneil(1.0, m, n) == (1.0, 1.0)


rates = st.floats(0.0, 1.0)


@given(rates, rates, rates, rates, st.sampled_from([0.01, 0.001]))
def test_more_membership_leakage_never_reads_milder(
    auc_low: float, more_auc: float, tpr_low: float, more_tpr: float, fpr: float
) -> None:
    def level(a: float, t: float) -> Level:
        m = metrics(auc=a, auc_ci=(a, a), tpr={fpr: (t, t, min(1.0, t + 0.01))})
        got = membership_level(m)
        assert got is not None
        assert membership_reading(m).startswith(levels.WORDS[got])
        return got

    a2, t2 = auc_low + more_auc * (1 - auc_low), tpr_low + more_tpr * (1 - tpr_low)
    base = level(auc_low, tpr_low)
    assert level(a2, tpr_low) >= base and level(auc_low, t2) >= base and level(a2, t2) >= base


def test_gradient_levels() -> None:
    assert gradient_level(None) is None
    assert gradient_reading(None).startswith("no reading")
    assert gradient_level(31.6, 0.95, 1.0, 11.4) == Level.HIGH
    assert gradient_level(20.0, 0.3, 0.0, 11.4) == Level.MODERATE
    assert gradient_level(12.0, 0.2, 0.25) == Level.MODERATE
    assert gradient_level(12.0, 0.2, 0.0, 11.4) == Level.LOW  # beats the members' mean image
    assert gradient_level(12.0, 0.2, 0.05) == Level.LOW  # one image in twenty identified
    assert gradient_level(8.3, 0.1, 0.0, 11.4) == Level.NONE
    text = gradient_reading(8.3, 0.1, 0.0, 11.4)
    assert text.startswith("no measurable leakage: the reconstructions are no closer")
    assert "mean PSNR 8.3 dB" in text and "the members' mean image: 11.4 dB" in text
    high = gradient_reading(31.6, None, 1.0)
    assert high.startswith("high leakage") and "100.0 % of the batch identified" in high


@given(st.floats(0, 60), st.floats(0, 30), rates, rates, rates, rates)
def test_better_reconstructions_never_read_milder(
    psnr: float, more_psnr: float, ssim: float, more_ssim: float, ident: float, more: float
) -> None:
    base = gradient_level(psnr, ssim, ident, 11.0)
    better = gradient_level(
        psnr + more_psnr, ssim + more_ssim * (1 - ssim), ident + more * (1 - ident), 11.0
    )
    assert base is not None and better is not None and better >= base


def test_reconstruction_levels() -> None:
    assert reconstruction_level(None) is None
    assert reconstruction_reading(None).startswith("no reading")
    assert reconstruction_level(0.02, 0.0, 0.06, 0.01) == Level.NONE
    assert reconstruction_level(0.08, 0.05, 0.11, 0.01) == Level.LOW
    assert reconstruction_level(0.3, 0.2, 0.4, 0.01) == Level.MODERATE
    assert reconstruction_level(0.72, 0.65, 0.79, 0.01) == Level.HIGH
    assert reconstruction_level(0.72, None, None, None) == Level.HIGH  # the rate as its bound
    text = reconstruction_reading(0.72, 0.65, 0.79, 0.01)
    assert text == (
        "high leakage: reconstructions identify their records more often than chance "
        "(72.0 % identified, 95 % CI 65.0–79.0 %, against 1.0 % by chance)"
    )
    assert "no interval" in reconstruction_reading(0.3, None, None, 0.0)
    none = reconstruction_reading(0.02, 0.0, 0.06, 0.01)
    assert none.startswith("no measurable leakage: the identified rate's interval reaches")


@given(rates, rates, rates)
def test_a_higher_identified_rate_never_reads_milder(low: float, more: float, null: float) -> None:
    base = reconstruction_level(low, low, None, null)
    better = reconstruction_level(low + more * (1 - low), low + more * (1 - low), None, null)
    assert base is not None and better is not None and better >= base


def test_the_documented_table_names_every_cut_off() -> None:
    doc = DOC.read_text()
    cut_offs = [n for n in dir(levels) if re.fullmatch(r"[A-Z_]+_(MODERATE|HIGH)", n)]
    assert len(cut_offs) == 11
    assert not [n for n in cut_offs if n not in doc], "constants missing from docs/levels.md"


def test_the_share_identified_is_graded_by_its_lower_bound_when_the_count_is_known():
    from privlab.report.levels import Level, gradient_level, gradient_reading

    # one image of eight: 12.5 % as a point, but its 95 % interval reaches 0.3 %
    assert gradient_level(8.3, identified=1 / 8) == Level.MODERATE  # count unknown
    assert gradient_level(8.3, identified=1 / 8, images=8) == Level.LOW
    assert gradient_level(8.3, identified=7 / 8, images=8) == Level.MODERATE  # lower 0.47
    assert gradient_level(8.3, identified=1.0, images=8) == Level.HIGH  # lower bound 0.63
    reading = gradient_reading(8.3, identified=1 / 8, images=8)
    assert "1 of 8 images identified (95 % CI 0.32–52.7 %)" in reading
