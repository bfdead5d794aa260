"""Plain-language readings of privacy measurements against documented levels.

A reading is one sentence: a level (no measurable, low, moderate or high leakage) and the
numbers behind it, with their 95 % intervals. The levels, their cut-offs (the constants below),
their rationale and the references are in ``docs/levels.md``. Every function is pure, a function
of a report's numbers: this module knows no study, the studies call it with their own numbers.

* membership inference (:func:`membership_reading`): the lower 95 % bound of TPR / FPR at the
  low false-positive rates the sample resolves (how much more often a threshold flags members
  than non-members; Carlini et al. 2022 argue for TPR at low FPR) and the AUC's interval;
* gradient inversion (:func:`gradient_reading`): the share of a client's batch identified from
  its reconstructions and their mean PSNR / SSIM;
* reconstruction from weights (:func:`reconstruction_reading`): the identified rate's lower bound
  above the rate of chance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from privlab.metrics.membership import clopper_pearson
from privlab.report.stats import as_float, rate_pct

__all__ = [
    "Level",
    "gradient_level",
    "gradient_reading",
    "membership_level",
    "membership_reading",
    "reconstruction_level",
    "reconstruction_reading",
]


class Level(IntEnum):
    """How much leaks, ordered: a higher level never means less leakage."""

    NONE = 0
    LOW = 1
    MODERATE = 2
    HIGH = 3


#: each level in words, the start of every reading
WORDS = {
    Level.NONE: "no measurable leakage",
    Level.LOW: "low leakage",
    Level.MODERATE: "moderate leakage",
    Level.HIGH: "high leakage",
}

# ---------------------------------------------------------------- membership inference

#: the low false-positive rates read, as in the report (str(fpr) keys of ``tpr_at_fpr``)
LOW_FPRS = (0.01, 0.001)
#: the AUC of an attack that ranks members and non-members by chance
CHANCE_AUC = 0.5
#: lower 95 % bound of the AUC from which membership leakage is moderate
AUC_MODERATE = 0.6
#: lower 95 % bound of TPR / FPR at a low FPR from which membership leakage is moderate
RATIO_MODERATE = 3.0
#: lower 95 % bound of TPR / FPR at a low FPR from which membership leakage is high
RATIO_HIGH = 10.0
#: the standard normal quantile of a two-sided 95 % interval
Z95 = 1.959963984540054


@dataclass(frozen=True)
class TprPoint:
    """TPR at one resolvable low FPR with its 95 % interval (``high`` None: no interval, the
    point estimate standing in for its lower bound)."""

    fpr: float
    tpr: float
    low: float
    high: float | None

    @property
    def ratio(self) -> float:
        """Lower bound of TPR / FPR: how many times more often the threshold flags members."""
        return self.low / self.fpr


@dataclass(frozen=True)
class MembershipEvidence:
    """What a membership reading rests on (from a report's ``metrics`` of one attack)."""

    auc: float | None
    auc_ci: tuple[float, float] | None
    auc_ci_approximate: bool
    points: tuple[TprPoint, ...]
    unresolved: tuple[float, ...]
    n_nonmembers: float | None

    @property
    def auc_low(self) -> float | None:
        return self.auc_ci[0] if self.auc_ci is not None else self.auc

    @property
    def strongest(self) -> TprPoint | None:
        """The point with the largest lower bound of TPR / FPR."""
        return max(self.points, key=lambda p: p.ratio, default=None)


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != 2:
        return None
    lo, hi = as_float(value[0]), as_float(value[1])
    return None if lo is None or hi is None else (lo, hi)


def _at(mapping: Any, fpr: float) -> Any:
    """The value for FPR ``fpr`` in a ``{"0.01": ...}`` mapping, keys matched numerically."""
    if not isinstance(mapping, Mapping):
        return None
    for key, value in mapping.items():
        k = as_float(key)
        if k is not None and math.isclose(k, fpr, rel_tol=1e-9):
            return value
    return None


def hanley_mcneil(auc: float, n_members: float, n_nonmembers: float) -> tuple[float, float]:
    """Hanley & McNeil's (1982) normal 95 % interval of an AUC from the two sample sizes; at
    AUC 0.5 its variance is the exact null variance of the Mann–Whitney statistic."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_members - 1) * (q1 - auc**2) + (n_nonmembers - 1) * (q2 - auc**2)
    half = Z95 * math.sqrt(max(var, 0.0) / (n_members * n_nonmembers))
    return max(0.0, auc - half), min(1.0, auc + half)


def _auc_interval(metrics: Mapping[str, Any], auc: float | None) -> tuple[Any, bool]:
    """The report's AUC interval, else Hanley & McNeil's from the sample sizes (approximate)."""
    recorded = _pair(metrics.get("auc_ci"))
    if recorded is not None or auc is None:
        return recorded, False
    m, n = as_float(metrics.get("n_members")), as_float(metrics.get("n_nonmembers"))
    if not m or not n or m < 1 or n < 1:
        return None, False
    return hanley_mcneil(auc, m, n), True


def resolves(fpr: float, n_nonmembers: float | None) -> bool:
    """Whether ``n_nonmembers`` can measure a TPR at ``fpr`` (at least 1 / fpr of them; an
    unknown count is not flagged)."""
    return n_nonmembers is None or n_nonmembers * fpr >= 1.0 - 1e-9


def _point(metrics: Mapping[str, Any], fpr: float) -> TprPoint | None:
    """TPR at ``fpr`` with the report's interval, else Clopper–Pearson's from the members'
    count, else none (the point estimate as its own bound)."""
    tpr = as_float(_at(metrics.get("tpr_at_fpr"), fpr))
    if tpr is None:
        return None
    ci = _pair(_at(metrics.get("tpr_at_fpr_ci"), fpr))
    n = as_float(metrics.get("n_members"))
    if ci is None and n is not None and n >= 1 and n == int(n):
        ci = clopper_pearson(min(round(tpr * n), int(n)), int(n))
    return TprPoint(fpr, tpr, ci[0], ci[1]) if ci else TprPoint(fpr, tpr, tpr, None)


def membership_evidence(metrics: Mapping[str, Any]) -> MembershipEvidence:
    """The AUC with its interval and each low FPR's TPR, or the FPRs the sample cannot resolve
    (flagged, never read as measured)."""
    n_out = as_float(metrics.get("n_nonmembers"))
    auc = as_float(metrics.get("auc"))
    auc_ci, approximate = _auc_interval(metrics, auc)
    resolved = [f for f in LOW_FPRS if resolves(f, n_out)]
    points = tuple(p for f in resolved if (p := _point(metrics, f)) is not None)
    unresolved = tuple(f for f in LOW_FPRS if f not in resolved)
    return MembershipEvidence(auc, auc_ci, approximate, points, unresolved, n_out)


def _auc_level(auc_low: float | None) -> Level:
    if auc_low is None or auc_low <= CHANCE_AUC:
        return Level.NONE
    return Level.MODERATE if auc_low >= AUC_MODERATE else Level.LOW


def _ratio_level(ratio: float) -> Level:
    if ratio >= RATIO_HIGH:
        return Level.HIGH
    if ratio >= RATIO_MODERATE:
        return Level.MODERATE
    return Level.LOW if ratio > 1.0 else Level.NONE


def _membership_level(ev: MembershipEvidence) -> Level | None:
    if ev.auc is None and not ev.points:
        return None
    strongest = ev.strongest
    by_ratio = _ratio_level(strongest.ratio) if strongest is not None else Level.NONE
    return max(_auc_level(ev.auc_low), by_ratio)


def membership_level(metrics: Mapping[str, Any]) -> Level | None:
    """The level of one attack's membership metrics (None: nothing to read). The higher of the
    AUC's (its lower bound above 0.5: low; from :data:`AUC_MODERATE`: moderate) and the low
    FPRs' (the largest lower bound of TPR / FPR above 1: low; from :data:`RATIO_MODERATE`:
    moderate; from :data:`RATIO_HIGH`: high): the AUC alone never reads as high."""
    return _membership_level(membership_evidence(metrics))


def _fpr_label(fpr: float) -> str:
    return f"{100 * fpr:g} % FPR"


def _times(x: float) -> str:
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def _auc_text(ev: MembershipEvidence) -> str:
    if ev.auc is None:
        return ""
    if ev.auc_ci is None:
        return f"AUC {ev.auc:.3f} (no interval)"
    kind = "approximate 95 % CI" if ev.auc_ci_approximate else "95 % CI"
    return f"AUC {ev.auc:.3f} ({kind} {ev.auc_ci[0]:.3f}–{ev.auc_ci[1]:.3f})"


def _tpr_text(p: TprPoint) -> str:
    ci = "no interval" if p.high is None else f"95 % CI {rate_pct(p.low)}–{rate_pct(p.high)} %"
    return f"TPR {rate_pct(p.tpr)} % ({ci}) at {_fpr_label(p.fpr)}"


def _membership_claim(ev: MembershipEvidence, level: Level) -> str:
    """What the level rests on, in words (the numbers follow it)."""
    p = ev.strongest
    if p is not None and _ratio_level(p.ratio) == level and level >= Level.MODERATE:
        bound = "" if p.high is None else f", at least {_times(p.ratio)} with 95 % confidence"
        return (
            f"a threshold identifies {rate_pct(p.tpr)} % of members at {_fpr_label(p.fpr)} "
            f"({_times(p.tpr / p.fpr)} the false-positive rate{bound})"
        )
    if level == Level.MODERATE:
        claim = f"members outrank non-members (the AUC's lower bound is {AUC_MODERATE:g} or more)"
        if not ev.points:
            return claim
        return (
            f"{claim}, though no threshold flags members at a low FPR {_times(RATIO_MODERATE)} "
            "as often as non-members with confidence"
        )
    if level == Level.LOW:
        return "measurably better than chance, but weak"
    chance = []
    if ev.auc_ci is not None:
        inside = ev.auc_ci[1] >= CHANCE_AUC
        chance.append(f"the AUC's interval {'includes' if inside else 'lies below'} 0.5")
    elif ev.auc is not None:
        chance.append("the AUC is not above 0.5")
    if ev.points:
        fprs = " and ".join(f"{100 * p.fpr:g} %" for p in ev.points)
        chance.append(f"TPR at {fprs} FPR is within its interval of the FPR")
    return " and ".join(chance)


def membership_reading(metrics: Mapping[str, Any]) -> str:
    """One sentence: the level of an attack's membership metrics (``auc``, ``auc_ci``,
    ``tpr_at_fpr``, ``tpr_at_fpr_ci``, ``n_members``, ``n_nonmembers``; see
    :func:`membership_level`) and the numbers behind it. An FPR the non-members cannot resolve
    is said to be so, never read as measured."""
    ev = membership_evidence(metrics)
    level = _membership_level(ev)
    n = "an unknown number of" if ev.n_nonmembers is None else f"{ev.n_nonmembers:.0f}"
    numbers = [_auc_text(ev), *map(_tpr_text, ev.points)]
    numbers += [
        f"TPR at {_fpr_label(f)} cannot be resolved with {n} non-members" for f in ev.unresolved
    ]
    details = "; ".join(t for t in numbers if t)
    if level is None:
        return "no reading: no AUC and no TPR at a low FPR" + (f" ({details})" if details else "")
    return f"{WORDS[level]}: {_membership_claim(ev, level)}; {details}"


# ---------------------------------------------------------------- gradient inversion

#: mean PSNR (dB) of the matched reconstructions from which leakage is moderate: shapes and
#: colours of the private images come back
PSNR_MODERATE = 18.0
#: mean PSNR (dB) from which leakage is high: near copies of the private images
PSNR_HIGH = 25.0
#: mean SSIM from which gradient-inversion leakage is moderate
SSIM_MODERATE = 0.4
#: mean SSIM from which gradient-inversion leakage is high
SSIM_HIGH = 0.7
#: share of the batch identified (the nearest client image is the image itself): moderate
IDENTIFIED_MODERATE = 0.1
#: share of the batch identified from which leakage is high
IDENTIFIED_HIGH = 0.5


def _graded(value: float | None, moderate: float, high: float) -> Level:
    if value is None:
        return Level.NONE
    return Level.HIGH if value >= high else Level.MODERATE if value >= moderate else Level.NONE


def identified_interval(identified: float, images: int) -> tuple[int, float, float]:
    """(images identified, Clopper–Pearson 95 % interval of the share) of ``images``."""
    k = min(round(identified * images), images)
    low, high = clopper_pearson(k, images)
    return k, low, high


def gradient_level(
    psnr: float | None,
    ssim: float | None = None,
    identified: float | None = None,
    baseline_psnr: float | None = None,
    images: int | None = None,
) -> Level | None:
    """The level of the strongest attack's reconstructions of a client batch (None: nothing
    to read): the highest of the share identified, the mean PSNR and the mean SSIM against
    their cut-offs; low when some image is identified or the PSNR beats ``baseline_psnr``
    (the members' mean image, a guess without the update). With the number of ``images``
    attacked, the share identified is graded by its 95 % lower confidence bound (one image of
    eight is not a measured 12 %)."""
    if psnr is None and ssim is None and identified is None:
        return None
    share = identified
    if identified is not None and images:
        share = identified_interval(identified, images)[1]
    level = max(
        _graded(share, IDENTIFIED_MODERATE, IDENTIFIED_HIGH),
        _graded(psnr, PSNR_MODERATE, PSNR_HIGH),
        _graded(ssim, SSIM_MODERATE, SSIM_HIGH),
    )
    beats_guess = psnr is not None and baseline_psnr is not None and psnr > baseline_psnr
    if level == Level.NONE and ((identified or 0.0) > 0 or beats_guess):
        return Level.LOW
    return level


_GRADIENT_CLAIMS = {
    Level.HIGH: "the server recovers most private images of the batch, or near copies",
    Level.MODERATE: "the server recovers some private images recognisably",
    Level.LOW: "the reconstructions carry information about the private images, few recognisably",
    Level.NONE: "no reconstruction is recognisable",
}


def _identified_text(identified: float | None, images: int | None) -> str:
    if identified is None:
        return ""
    if not images:
        return f"{rate_pct(identified)} % of the batch identified"
    k, low, high = identified_interval(identified, images)
    return f"{k} of {images} images identified (95 % CI {rate_pct(low)}–{rate_pct(high)} %)"


def gradient_reading(
    psnr: float | None,
    ssim: float | None = None,
    identified: float | None = None,
    baseline_psnr: float | None = None,
    images: int | None = None,
) -> str:
    """One sentence: the level of a gradient-inversion measurement (see
    :func:`gradient_level`) and its numbers."""
    level = gradient_level(psnr, ssim, identified, baseline_psnr, images)
    if level is None:
        return "no reading: no reconstruction quality was measured"
    numbers = [
        "" if psnr is None else f"mean PSNR {psnr:.1f} dB",
        "" if ssim is None else f"SSIM {ssim:.2f}",
        _identified_text(identified, images),
        "" if baseline_psnr is None else f"the members' mean image: {baseline_psnr:.1f} dB",
    ]
    claim = _GRADIENT_CLAIMS[level]
    if level == Level.NONE and baseline_psnr is not None:
        claim = "the reconstructions are no closer to the private images than a guess"
    return f"{WORDS[level]}: {claim} ({', '.join(t for t in numbers if t)})"


# ---------------------------------------------------------------- reconstruction from weights

#: lower 95 % bound of the identified rate, minus the rate of chance, from which
#: reconstruction leakage is moderate (one record in ten beyond chance)
RECONSTRUCTION_MODERATE = 0.10
#: the same excess from which reconstruction leakage is high (most records beyond chance)
RECONSTRUCTION_HIGH = 0.50


def reconstruction_level(
    rate: float | None,
    ci_low: float | None = None,
    ci_high: float | None = None,
    null_rate: float | None = None,
) -> Level | None:
    """The level of a reconstruction-from-weights measurement (None: no rate): its excess over
    chance, the lower bound ``ci_low`` (else the rate itself) minus ``null_rate`` (else 0);
    above 0: low; from :data:`RECONSTRUCTION_MODERATE`: moderate; from
    :data:`RECONSTRUCTION_HIGH`: high."""
    del ci_high  # the level rests on the lower bound
    if rate is None:
        return None
    excess = (rate if ci_low is None else ci_low) - (null_rate or 0.0)
    if excess >= RECONSTRUCTION_HIGH:
        return Level.HIGH
    if excess >= RECONSTRUCTION_MODERATE:
        return Level.MODERATE
    return Level.LOW if excess > 0 else Level.NONE


def reconstruction_reading(
    rate: float | None,
    ci_low: float | None = None,
    ci_high: float | None = None,
    null_rate: float | None = None,
) -> str:
    """One sentence: the identified rate of reconstructions from released weights against the
    rate of chance (the same test on weights that never saw the record), with its level."""
    level = reconstruction_level(rate, ci_low, ci_high, null_rate)
    if level is None or rate is None:
        return "no reading: no identified rate was measured"
    ci = (
        "no interval"
        if ci_low is None or ci_high is None
        else f"95 % CI {rate_pct(ci_low)}–{rate_pct(ci_high)} %"
    )
    chance = "an unrecorded rate" if null_rate is None else f"{rate_pct(null_rate)} %"
    if level == Level.NONE:
        claim = "the identified rate's interval reaches the rate of chance"
    else:
        claim = "reconstructions identify their records more often than chance"
    found = f"{rate_pct(rate)} % identified"
    return f"{WORDS[level]}: {claim} ({found}, {ci}, against {chance} by chance)"
