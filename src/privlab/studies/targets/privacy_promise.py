"""The privacy promise of each target, checked: the accountant's ε (an upper bound, if the
implementation is right) beside the empirical lower bounds the attacks give, from the
membership attacks' results and from the canary audit (:mod:`.canary_audit`).

A lower bound above the claimed ε means the DP implementation or its accounting is broken;
for a target with no DP claim the best lower bound says "this model behaves no better than
ε ≥ …".
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from privlab.studies.base import TextTable
from privlab.studies.targets.aggregate import attacks_of

HEADER = [
    "target", "claimed ε (δ)", "attacks: ε ≥", "canaries: ε ≥", "gradient canaries: ε ≥", "gap",
    "reading",
]  # fmt: skip


def claimed(target: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The target's accountant ε and δ (None: no DP claim)."""
    privacy = target.get("privacy") or {}
    return privacy.get("epsilon"), privacy.get("delta")


def attack_bound(target: Mapping[str, Any]) -> tuple[float, str] | None:
    """The largest ε lower bound over the target's membership attacks, and its attack."""
    found = [
        (float(bound["epsilon"]), str(a.get("label")))
        for a in attacks_of(target)
        if (bound := (a.get("metrics") or {}).get("epsilon_lower_bound"))
        and bound.get("epsilon") is not None
    ]
    return max(found) if found else None


def canary_bound(target: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The black-box canary audit's result (None: not run)."""
    audit = target.get("dp_audit")
    return audit if isinstance(audit, Mapping) and audit.get("epsilon") is not None else None


def white_box_bound(target: Mapping[str, Any], key: str = "white_box") -> Mapping[str, Any] | None:
    """A gradient-canary audit of the target (None: not run): of its DP-SGD step
    (``white_box``) or inside its recipe's training (``in_training``)."""
    audit = target.get("dp_audit")
    white = audit.get(key) if isinstance(audit, Mapping) else None
    return white if isinstance(white, Mapping) and white.get("epsilon") is not None else None


def proven_bound(target: Mapping[str, Any]) -> float | None:
    """The largest valid lower bound: the canary audits' (independent inclusions)."""
    audits = (canary_bound(target), white_box_bound(target), white_box_bound(target, "in_training"))
    values = [float(a["epsilon"]) for a in audits if a]
    return max(values) if values else None


def best_bound(target: Mapping[str, Any]) -> float | None:
    values = [b[0] for b in [attack_bound(target)] if b is not None]
    values += [b for b in [proven_bound(target)] if b is not None]
    return max(values) if values else None


def reading(target: Mapping[str, Any]) -> str:
    """One plain sentence: the promise kept or broken, or the ε the model behaves like. Only
    the canary audit proves a promise broken: its inclusions are independent coin flips, as
    the bound needs; the attacks' bound reads one model's fixed member / non-member split, so
    above the claim it is a warning to confirm with canaries, not a proof."""
    eps, _ = claimed(target)
    lower = best_bound(target)
    if lower is None:
        return ""
    if eps is None:
        return f"no DP claim: behaves no better than ε ≥ {lower:.2f}"
    proven = proven_bound(target)
    if proven is not None and proven > eps:
        return (
            f"PROMISE BROKEN: the canary audit proves ε ≥ {proven:.2f} > the claimed "
            f"{eps:.2f} (the DP implementation or its accounting is wrong)"
        )
    if lower > eps:
        return (
            f"WARNING: the attacks' estimate ε ≥ {lower:.2f} exceeds the claimed {eps:.2f}; "
            "run a canary audit (dp_audit) to confirm"
        )
    gap = eps - lower
    return f"consistent: claimed ε {eps:.2f}, audited lower bound {lower:.2f} (gap {gap:.2f})"


def _canary_cell(target: Mapping[str, Any]) -> str:
    audit = canary_bound(target)
    if audit is None:
        return "—"
    guesses, correct = audit.get("guesses"), audit.get("correct")
    right = f"{correct}/{guesses} right, " if guesses is not None and correct is not None else ""
    return f"{audit['epsilon']:.2f} ({right}{100 * float(audit['confidence']):g} %)"


def _gradient_cell(target: Mapping[str, Any]) -> str:
    """The gradient canaries' bounds: on the DP step, and inside training where run."""
    cells = [
        f"{audit['epsilon']:.2f}{suffix}"
        for key, suffix in (("white_box", ""), ("in_training", " (in training)"))
        if (audit := white_box_bound(target, key)) is not None
    ]
    return "; ".join(cells) or "—"


def promise_rows(targets: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per target that has any lower bound."""
    rows = []
    for t in targets:
        lower = best_bound(t)
        if lower is None:
            continue
        eps, delta = claimed(t)
        attack = attack_bound(t)
        rows.append(
            [
                str(t.get("name")),
                "—" if eps is None else f"{eps:.2f} ({delta:.1e})" if delta else f"{eps:.2f}",
                "—" if attack is None else f"{attack[0]:.2f} ({attack[1]})",
                _canary_cell(t),
                _gradient_cell(t),
                "—" if eps is None else f"{eps - lower:.2f}",
                reading(t),
            ]
        )
    return rows


def promise_text_table(targets: Sequence[Mapping[str, Any]]) -> TextTable | None:
    rows = promise_rows(targets)
    if not rows:
        return None
    return TextTable(
        "privacy promise: the accountant's ε beside the empirical lower bounds (the attacks' at "
        "95 %, the canaries' at the confidence shown; a canary bound above the claim is a "
        "broken promise)",
        HEADER,
        rows,
    )


def promise_html(targets: Sequence[Mapping[str, Any]]) -> str:
    rows = promise_rows(targets)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        "<h2>Privacy promise</h2><p class=sub>The accountant's ε is an upper bound if the DP "
        "implementation is right; the attacks' results and the canary audit give lower bounds "
        "(Clopper&ndash;Pearson, Jagielski et al. 2020; one-run canaries, Steinke, Nasr &amp; "
        "Jagielski 2023). A lower bound above the claim proves the promise broken.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
    )
