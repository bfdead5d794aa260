"""The targets study: targets trained per seed with their regimes, attacked by membership
inference, model inversion and the leave-out sensitivity analysis (Song et al.; AT-AT)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from privlab.registry import STUDIES
from privlab.report.levels import WORDS, membership_level, membership_reading
from privlab.report.stats import format_pm
from privlab.run.context import RunContext
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of
from privlab.studies.targets.aggregate import (
    UTILITY_KEYS,
    aggregate_targets,
    attack_label,
    attack_value,
    attacks_of,
    low_fpr_text,
)
from privlab.studies.targets.config import TargetsConfig
from privlab.studies.targets.console import (
    exposed_text_tables,
    inversion_text_table,
    membership_text_table,
)
from privlab.studies.targets.html import targets_html
from privlab.studies.targets.privacy_promise import best_bound, promise_text_table
from privlab.studies.targets.privacy_promise import reading as promise_reading
from privlab.studies.targets.run import TargetsRun
from privlab.studies.targets.threat import check_access

#: per attack, the numbers compared across runs
ATTACK_SCALARS = ("accuracy", "advantage", "auc", "honest_accuracy", "tpr@0.01")


def flat_view(report: Mapping[str, Any], section: StudyReport) -> dict[str, Any]:
    """The section's runs as one flat list of targets, with the data splits per seed (the
    form the targets' tables and figures read)."""
    runs = runs_of(section)
    data = next((r.get("data") for r in runs if r.get("data")), None) or {}
    return {
        "config": report.get("config") or {},
        "seeds": [r.get("seed") for r in runs],
        "data": {
            "name": data.get("name"),
            "splits": {str(r.get("seed")): r.get("data") or {} for r in runs},
        },
        "targets": [t for r in runs for t in r.get("targets") or [] if isinstance(t, Mapping)],
    }


def _metrics_per_seed(
    view: Mapping[str, Any], base_name: str, label: str
) -> list[tuple[Any, Mapping[str, Any]]]:
    """(seed, metrics) of one target's attack in every seed that ran it."""
    out = []
    for t in view["targets"]:
        if (t.get("base_name") or t.get("name")) != base_name:
            continue
        attack = next((a for a in attacks_of(t) if attack_label(a) == label), None)
        if attack is not None:
            out.append((t.get("seed"), attack.get("metrics") or {}))
    return out


def _low_fpr(view: Mapping[str, Any], base_name: str, label: str) -> str:
    """The low-FPR reading of one target's attack (one seed: with intervals, or flagged)."""
    seeds = _metrics_per_seed(view, base_name, label)
    return low_fpr_text(seeds[0][1]) if len(seeds) == 1 else ""


def _reading(view: Mapping[str, Any], base_name: str, label: str) -> str:
    """The plain-language reading of one target's strongest attack (docs/levels.md): the
    sentence for one seed, the level of each seed for several."""
    seeds = _metrics_per_seed(view, base_name, label)
    if len(seeds) == 1:
        return f"{base_name} ({label}): {membership_reading(seeds[0][1])}"
    levels = [(seed, membership_level(m)) for seed, m in seeds]
    words = [f"seed {seed}: {WORDS[lv] if lv is not None else 'no reading'}" for seed, lv in levels]
    return f"{base_name} ({label}), per seed: {'; '.join(words)}" if words else ""


def _label_only_lines(view: Mapping[str, Any]) -> list[str]:
    """Per target attacked both ways: the label-only boundary attack's AUC beside I_A's
    (Song et al.'s white-box attack on the same idea, the distance to the boundary), mean
    over seeds."""
    aucs: dict[str, dict[str, list[float]]] = {}
    for t in view["targets"]:
        for a in attacks_of(t):
            auc = (a.get("metrics") or {}).get("auc")
            if a.get("name") in ("boundary_distance", "adversarial_confidence") and auc is not None:
                per = aucs.setdefault(str(t.get("base_name") or t.get("name")), {})
                per.setdefault(a["name"], []).append(float(auc))
    return [
        f"{name}: the label-only boundary attack reaches AUC {statistics.fmean(b):.3f} against "
        f"I_A's {statistics.fmean(ia):.3f} (white-box, the same distance idea with gradients)"
        for name, per in aucs.items()
        if (b := per.get("boundary_distance")) and (ia := per.get("adversarial_confidence"))
    ]


def _promise_lines(view: Mapping[str, Any]) -> list[str]:
    """Per target with an ε lower bound: the privacy promise read in one sentence, from the
    seed whose bound is the largest (the one that says most)."""
    worst: dict[str, Mapping[str, Any]] = {}
    for t in view["targets"]:
        name = str(t.get("base_name") or t.get("name"))
        bound = best_bound(t)
        if bound is not None and bound > (
            best_bound(worst[name]) or -1.0 if name in worst else -1.0
        ):
            worst[name] = t
    return [f"{name}: {promise_reading(t)}" for name, t in worst.items()]


@STUDIES.register("targets")
class TargetsStudy(StudyBase):
    """Targets trained per seed under their regimes, attacked by membership inference (LiRA,
    RMIA, Shokri, I_A and more), model inversion and leave-out sensitivity."""

    name = "targets"
    title = "Trained targets: membership inference, model inversion, sensitivity"
    section = TargetsConfig
    order = 0
    summarises_seeds = True  # "Summary over seeds" per target and attack

    def check(self, cfg: TargetsConfig, ctx: RunContext) -> None:
        check_access(cfg)

    def run(self, ctx: RunContext, cfg: TargetsConfig, seed: int) -> dict[str, Any]:
        return TargetsRun(cfg, ctx, seed).run()

    def cells(self, cfg: TargetsConfig) -> list[TargetsConfig]:
        """One part per target: a target's training, utility and attacks need no other
        target (a seed's shared inversion prior comes from the model cache, or is trained by
        the first part that lacks it)."""
        if len(cfg.targets) < 2:
            return [cfg]
        return [cfg.model_copy(update={"targets": [t]}) for t in cfg.targets]

    def merge(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The seed's run: the first part's seed and data, every part's targets in order."""
        first = runs[0]
        return first | {"targets": [t for run in runs for t in run["targets"]]}

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        return targets_html(flat_view(report, section))

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        view = flat_view(report, section)
        tables = [membership_text_table(view), promise_text_table(view["targets"])]
        tables += exposed_text_tables(view)
        tables.append(inversion_text_table(view))
        return [t for t in tables if t is not None]

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        """Per target, the membership attack with the largest advantage (mean over seeds), then
        its plain-language reading against the documented levels (docs/levels.md)."""
        lines = []
        view = flat_view(report, section)
        for row in aggregate_targets(view):
            ranked = [
                (stats["advantage"][0], label, stats)
                for label, stats in row["attacks"].items()
                if stats["advantage"][0] is not None
            ]
            if not ranked:
                continue
            adv, label, stats = max(ranked, key=lambda item: item[0])

            def show(key: str, stats: Any = stats, n: int = row["n"]) -> str:
                mean = stats[key][0]
                return (
                    "—" if mean is None else format_pm(stats[key]) if n > 1 else f"{100 * mean:.1f}"
                )

            seeds = f", mean ± std over {row['n']} seeds" if row["n"] > 1 else ""
            auc = stats["auc"][0]
            lines.append(
                f"{row['target']}: membership advantage {100 * adv:.1f} % ({label}: worst-case "
                f"accuracy {show('accuracy')} %"
                + (f", honest {show('honest_accuracy')} %" if stats["honest_accuracy"][0] else "")
                + (f", AUC {auc:.3f}" if auc is not None else "")
                + f"{seeds})"
                + (f"; {low}" if (low := _low_fpr(view, row["target"], label)) else "")
            )
            lines += [reading] if (reading := _reading(view, row["target"], label)) else []
        return lines + _label_only_lines(view) + _promise_lines(view)

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for t in run.get("targets") or []:
            row: dict[str, Any] = {k: (t.get("utility") or {}).get(k) for k in UTILITY_KEYS}
            for a in attacks_of(t):
                for key in ATTACK_SCALARS:
                    row[f"{attack_label(a)} {key}"] = attack_value(a, key)
            out[str(t.get("base_name") or t.get("name"))] = {
                k: v for k, v in row.items() if v is not None
            }
        return out
