"""Aggregate a multi-seed ``report.json`` per target and summarise it as markdown.

Targets are grouped by ``base_name`` (the target name without its seed).  For every
group we report the mean and the sample standard deviation (``n - 1`` denominator; 0 for
a single value) of the utility numbers and of each attack's worst-case accuracy,
advantage, AUC and honest accuracy.  Values that were not measured (None, NaN, missing)
are left out of the statistics; a statistic with no values at all is ``(None, None)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privlab.report.stats import as_float, format_pm, md_escape, mean_std, rate_pct

__all__ = [
    "ATTACK_STATS",
    "UTILITY_KEYS",
    "aggregate_targets",
    "as_float",
    "attack_label",
    "attack_value",
    "attacks_of",
    "markdown_summary",
    "mean_std",
    "targets_of",
]

#: utility keys of a report and their column headers
UTILITY_COLUMNS = {
    "train_acc": "train",
    "test_acc": "test",
    "adv_train_acc": "adv-train",
    "adv_test_acc": "adv-test",
    "ver_train_acc": "ver-train",
    "ver_test_acc": "ver-test",
}
UTILITY_KEYS = tuple(UTILITY_COLUMNS)
ATTACK_STATS = (
    "accuracy",
    "advantage",
    "auc",
    "honest_accuracy",
    "tpr@0.001",
    "tpr@0.01",
    "null_p95",
)


def attack_label(attack: Mapping[str, Any]) -> str:
    return str(attack.get("label") or attack.get("name") or "attack")


def attack_value(attack: Mapping[str, Any], key: str) -> Any:
    """One metric of an attack; ``honest_accuracy`` reads ``metrics.honest.accuracy`` and
    ``tpr@F`` the TPR at false-positive rate F."""
    metrics = attack.get("metrics") or {}
    if key == "honest_accuracy":
        return (metrics.get("honest") or {}).get("accuracy")
    if key == "null_p95":  # the worst-case accuracy's no-signal level (permutation null)
        return (metrics.get("accuracy_null") or {}).get("p95")
    if key.startswith("tpr@"):
        tprs = metrics.get("tpr_at_fpr") or {}
        fpr = float(key[4:])
        return next((v for k, v in tprs.items() if as_float(k) == fpr), None)
    return metrics.get(key)


def targets_of(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The report's target dicts, skipping malformed entries."""
    return [t for t in report.get("targets") or [] if isinstance(t, Mapping)]


def attacks_of(target: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A target's attack dicts, skipping malformed entries."""
    return [a for a in target.get("attacks") or [] if isinstance(a, Mapping)]


def aggregate_targets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per ``base_name`` with ``(mean, std)`` of utility and attack metrics.

    Row layout::

        {"target": "pgd_at", "n": 3, "seeds": [0, 1, 2], "regime": "pgd_at",
         "train_acc": (m, s), "test_acc": (m, s), "adv_train_acc": (m, s),
         "adv_test_acc": (m, s),
         "attacks": {"I_A": {"accuracy": (m, s), "advantage": (m, s), "auc": (m, s),
                             "honest_accuracy": (m, s), "n": 3}}}

    Groups keep the order of first appearance, as do attack labels within a group.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in targets_of(report):
        base = str(t.get("base_name") or t.get("name") or "?")
        groups.setdefault(base, []).append(t)

    rows = []
    for base, members in groups.items():
        row: dict[str, Any] = {
            "target": base,
            "n": len(members),
            "seeds": [t.get("seed") for t in members],
            "regime": next((t.get("regime") for t in members if t.get("regime")), None),
        }
        for key in UTILITY_KEYS:
            row[key] = mean_std((t.get("utility") or {}).get(key) for t in members)
        per_label: dict[str, list[Mapping[str, Any]]] = {}
        for t in members:
            for a in attacks_of(t):
                per_label.setdefault(attack_label(a), []).append(a)
        row["attacks"] = {
            label: {
                **{k: mean_std(attack_value(a, k) for a in attacks) for k in ATTACK_STATS},
                "n": len(attacks),
            }
            for label, attacks in per_label.items()
        }
        rows.append(row)
    return rows


def _accuracy_cell(stats: Mapping[str, Any]) -> str:
    """A_inf (mean ± std), starred when it does not clear the mean no-signal level."""
    acc, null = stats.get("accuracy"), stats.get("null_p95")
    cell = format_pm(acc)
    if acc and null and acc[0] is not None and null[0] is not None and acc[0] <= null[0]:
        cell += "*"
    return cell


def markdown_summary(report: Mapping[str, Any]) -> str:
    """GitHub markdown table of :func:`aggregate_targets` (percent, ``mean ± std``).

    Columns: target, n (seeds), the utility columns (train … ver-test), then one column per
    attack label with its worst-case inference accuracy A_inf.
    """
    rows = aggregate_targets(report)
    labels: list[str] = []
    for row in rows:
        labels.extend(lab for lab in row["attacks"] if lab not in labels)
    header = ["target", "n", *UTILITY_COLUMNS.values()]
    header += [f"{md_escape(lab)} A_inf" for lab in labels]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---", "--:"] + ["--:"] * (len(header) - 2)) + " |",
    ]
    for row in rows:
        cells = [md_escape(row["target"]), str(row["n"])]
        cells += [format_pm(row[k]) for k in UTILITY_KEYS]
        cells += [_accuracy_cell(row["attacks"].get(lab) or {}) for lab in labels]
        lines.append("| " + " | ".join(cells) + " |")
    name = (report.get("config") or {}).get("name")
    seeds = report.get("seeds")
    note = "Values in %, mean ± sample std over seeds"
    if seeds:
        note += f" ({', '.join(str(s) for s in seeds)})"
    note += (
        "; A_inf is the worst-case (oracle-threshold) membership inference accuracy; * marks "
        "a mean A_inf not above its no-signal level (the permutation null's 95th percentile)."
    )
    title = f"**{md_escape(name)}**\n\n" if name else ""
    return title + "\n".join(lines) + "\n\n" + note + "\n"


TPR_FPRS = (0.001, 0.01, 0.1)


def lookup_fpr(mapping: Any, fpr: float) -> Any:
    """Value for FPR ``fpr`` in a ``{"0.01": ...}`` mapping, matching keys numerically."""
    if not isinstance(mapping, Mapping):
        return None
    for key, value in mapping.items():
        k = as_float(key)
        if k is not None and abs(k - fpr) <= 1e-9 * max(1.0, fpr):
            return value
    return None


def attack_labels(targets: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Attack labels in order of first appearance, each with its first attack dict."""
    out: dict[str, Mapping[str, Any]] = {}
    for t in targets:
        for a in attacks_of(t):
            out.setdefault(attack_label(a), a)
    return out


def find_attack(target: Mapping[str, Any], label: str) -> Mapping[str, Any] | None:
    return next((a for a in attacks_of(target) if attack_label(a) == label), None)


def within_null(metrics: Mapping[str, Any]) -> bool:
    """The worst-case accuracy does not clear its no-signal level (the permutation null's 95th
    percentile): on this sample it is not evidence of leakage."""
    null = metrics.get("accuracy_null") or {}
    acc, p95 = metrics.get("accuracy"), null.get("p95")
    return acc is not None and p95 is not None and float(acc) <= float(p95)


def resolves(fpr: float, n_nonmembers: Any) -> bool:
    """Whether ``n_nonmembers`` can measure a TPR at false-positive rate ``fpr``: at least
    1/fpr of them (below that, the lowest non-zero FPR the sample has is above ``fpr``).
    An unknown count (a report that does not record it) is not flagged."""
    n = as_float(n_nonmembers)
    return n is None or n * fpr >= 1.0 - 1e-9


def low_fpr_text(metrics: Mapping[str, Any], fprs: Sequence[float] = (0.01, 0.001)) -> str:
    """TPR at each low FPR with its 95 % Clopper–Pearson interval, or a flag where the
    sample of non-members cannot resolve that FPR."""
    parts = []
    for fpr in fprs:
        where = f"{100 * fpr:g} % FPR"
        if not resolves(fpr, metrics.get("n_nonmembers")):
            parts.append(f"{where} not resolved by {metrics.get('n_nonmembers')} non-members")
            continue
        tpr = as_float(lookup_fpr(metrics.get("tpr_at_fpr"), fpr))
        ci = lookup_fpr(metrics.get("tpr_at_fpr_ci"), fpr) or (None, None)
        if tpr is None:
            continue
        lo, hi = as_float(ci[0]), as_float(ci[1])
        interval = (
            f" (95 % CI {rate_pct(lo)}–{rate_pct(hi)})" if lo is not None and hi is not None else ""
        )
        parts.append(f"TPR {rate_pct(tpr)} %{interval} at {where}")
    return "; ".join(parts)
