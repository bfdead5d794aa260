"""Render a ``report.json`` dict (schema_version 1) as one self-contained HTML page.

The page has no external assets: CSS is inline and figures are base64 PNG ``data:`` URIs
(see :mod:`privlab.report.figures`).  Every string taken from the report is
HTML-escaped, and missing optional values render as an em dash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from privlab.report.html_format import DASH, esc, figure_html, num, pct, rate, sci, text_table
from privlab.report.stats import as_float
from privlab.report.stats import format_pm as pm
from privlab.studies.targets.aggregate import (
    TPR_FPRS,
    UTILITY_COLUMNS,
    UTILITY_KEYS,
    aggregate_targets,
    attack_labels,
    find_attack,
    lookup_fpr,
    resolves,
    targets_of,
    within_null,
)
from privlab.studies.targets.figures import (
    advantage_bar_figure,
    exposed_records,
    exposure_figure,
    has_exposed_images,
    linear_roc_figure,
    loss_histogram_figure,
    most_exposed_attack,
    roc_figure,
    sensitivity_figure,
)
from privlab.studies.targets.privacy_promise import promise_html

__all__ = ["targets_html"]


def _privacy(privacy: Any) -> str:
    if not isinstance(privacy, Mapping):
        return DASH
    eps, delta = as_float(privacy.get("epsilon")), as_float(privacy.get("delta"))
    if eps is None:
        return DASH
    text = f"ε={sci(eps, '.3g')}" + (f", δ={sci(delta)}" if delta is not None else "")
    acc = privacy.get("accountant")
    return f'<span title="accountant: {esc(acc)}">{text}</span>' if acc else text


def _splits_table(report: Mapping[str, Any]) -> str:
    """The data splits of every seed: sizes and sha256."""
    rows = []
    for seed, split in ((report.get("data") or {}).get("splits") or {}).items():
        split = split if isinstance(split, Mapping) else {}
        hashes = split.get("sha256") or {}
        hash_html = "<br>".join(
            f'{esc(k)}: <code class="hash">{esc(v)}</code>' for k, v in hashes.items()
        )
        sizes = "".join(
            f'<td class="n">{esc(split.get(k))}</td>'
            for k in ("members", "nonmembers", "population")
        )
        rows.append(f'<tr><td class="n">{esc(seed)}</td>{sizes}<td>{hash_html or DASH}</td></tr>')
    if not rows:
        return ""
    name = esc((report.get("data") or {}).get("name"))
    return (
        f"<h3>Data: {name}</h3><table><tr><th>split seed</th><th>members</th>"
        f"<th>non-members</th><th>population</th><th>sha256</th></tr>{''.join(rows)}</table>"
    )


def _utility_table(targets: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("target", "regime", "seed", "temperature", *UTILITY_COLUMNS.values())
    )
    rows = []
    for t in targets:
        u = t.get("utility") or {}
        params = json.dumps(t.get("regime_params") or {}, sort_keys=True, default=str)
        cells = [
            f"<td>{esc(t.get('name'))}</td>",
            f'<td><span title="{esc(params)}">{esc(t.get("regime"))}</span></td>',
            f'<td class="n">{esc(t.get("seed"))}</td>',
            f'<td class="n">{num(t.get("temperature"), "g")}</td>',
            *(f'<td class="n">{pct(u.get(k))}</td>' for k in UTILITY_KEYS),
            f"<td>{_privacy(t.get('privacy'))}</td>",
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<h2>Utility</h2><table><tr>{head}<th>privacy</th></tr>{''.join(rows)}</table>"


def _membership_cell(attack: Mapping[str, Any] | None) -> str:
    if attack is None:
        return f'<td class="n">{DASH}</td>'
    m = attack.get("metrics") or {}
    lines = [f'{pct(m.get("accuracy"))} <span class="adv">({pct(m.get("advantage"))})</span>']
    ci, null = m.get("accuracy_ci"), m.get("accuracy_null") or {}
    if ci and null:
        flag = " · <b>not above it</b>" if within_null(m) else ""
        lines.append(
            f'<div class="sub">95 % CI {pct(ci[0])}–{pct(ci[1])}; no signal '
            f"{pct(null.get('mean'))} (95th pct {pct(null.get('p95'))}){flag}</div>"
        )
    honest = m.get("honest")
    if isinstance(honest, Mapping):
        src = f" [{esc(honest.get('source'))}]" if honest.get("source") else ""
        h_acc, h_adv = pct(honest.get("accuracy")), pct(honest.get("advantage"))
        lines.append(f'<div class="sub">honest {h_acc} ({h_adv}){src}</div>')
    else:
        lines.append(f'<div class="sub">honest {DASH}</div>')
    lines.append(f'<div class="sub">AUC {num(m.get("auc"))}</div>')
    tprs = []
    for fpr in TPR_FPRS:
        if not resolves(fpr, m.get("n_nonmembers")):
            tip = f"{esc(m.get('n_nonmembers'))} non-members cannot resolve this FPR"
            tprs.append(f'@{sci(100 * fpr)}% <span title="{tip}">n/r</span>')
            continue
        value = rate(lookup_fpr(m.get("tpr_at_fpr"), fpr))
        ci = lookup_fpr(m.get("tpr_at_fpr_ci"), fpr)
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            tip = f"95% Clopper–Pearson interval: {rate(ci[0])} – {rate(ci[1])}"
            value = f'<span title="{tip}">{value}</span>'
        tprs.append(f"@{sci(100 * fpr)}% {value}")
    lines.append(f'<div class="sub">TPR {" · ".join(tprs)}</div>')
    return f'<td class="n">{"".join(lines)}</td>'


def _membership_table(targets: Sequence[Mapping[str, Any]]) -> str:
    labels = attack_labels(targets)
    if not labels:
        return f"<h2>Membership inference</h2><p>{DASH} (no attacks were run)</p>"
    head = "".join(
        f'<th>{esc(lab)}<div class="sub">{esc(a.get("name"))}</div></th>'
        for lab, a in labels.items()
    )
    rows = [
        f"<tr><td>{esc(t.get('name'))}</td>"
        + "".join(_membership_cell(find_attack(t, lab)) for lab in labels)
        + "</tr>"
        for t in targets
    ]
    note = (
        '<p class="sub">Cell: worst-case A<sub>inf</sub> (advantage); below it the honest '
        "accuracy (advantage), AUC, and TPR at 0.1% / 1% / 10% FPR (hover for the 95% "
        "Clopper–Pearson interval; n/r: too few non-members to resolve that FPR).</p>"
    )
    table = f"<table><tr><th>target</th>{head}</tr>{''.join(rows)}</table>"
    return f"<h2>Membership inference</h2>{note}{table}"


def _target_section(t: Mapping[str, Any]) -> str:
    model = t.get("model") or {}
    params = json.dumps(model.get("params") or {}, sort_keys=True, default=str)
    meta = (
        f'model <span title="{esc(params)}">{esc(model.get("name"))}</span> · '
        f'sha256 <code class="hash">{esc(t.get("model_sha256"))}</code> · '
        f"trained in {num(t.get('train_seconds'), '.1f')} s"
    )
    figs = ""
    if t.get("attacks"):
        figs += figure_html(roc_figure, t, "ROC (log-log)")
        figs += figure_html(linear_roc_figure, t, "ROC (linear)")
    figs += figure_html(loss_histogram_figure, t, "loss: members vs non-members")
    records = _exposed_table(t)
    if has_exposed_images(t) or (most_exposed_attack(t) is not None and not records):
        figs += figure_html(exposure_figure, t, "most exposed training points")
    return (
        f'<h3>{esc(t.get("name"))}</h3><p class="sub">{meta}</p><div class="figs">{figs}</div>'
        + records
    )


def _exposed_table(t: Mapping[str, Any]) -> str:
    """The most exposed members of tabular data, one row per record with its attributes."""
    records = exposed_records(t)
    if records is None:
        return ""
    label, header, rows = records
    note = (
        f'<p class="sub">The members {esc(label)} singles out most: index into the members, '
        "class, attack score, the false-positive rate a threshold at that score costs, then "
        "the record's attributes (one-hot groups decoded; numeric attributes as encoded).</p>"
    )
    table = text_table(header, rows)
    return f'<h4>most exposed training records</h4>{note}<div style="overflow-x:auto">{table}</div>'


def _summary_table(report: Mapping[str, Any]) -> str:
    """Mean ± std over seeds per target (only when the run has several seeds)."""
    rows = aggregate_targets(report)
    if not any(row["n"] > 1 for row in rows):
        return ""
    labels = list(dict.fromkeys(lab for row in rows for lab in row["attacks"]))
    head = "".join(f"<th>{esc(h)}</th>" for h in ["target", "n", *UTILITY_COLUMNS.values()])
    head += "".join(
        f"<th>{esc(lab)}<br><span class=sub>A<sub>inf</sub> / honest</span></th>" for lab in labels
    )
    body = []
    for row in rows:
        cells = [f"<td>{esc(row['target'])}</td>", f"<td class=num>{row['n']}</td>"]
        cells += [f"<td class=num>{pm(row[k])}</td>" for k in UTILITY_KEYS]
        for lab in labels:
            stats = row["attacks"].get(lab) or {}
            cells.append(
                f"<td class=num>{pm(stats.get('accuracy'))}<br><span class=sub>"
                f"{pm(stats.get('honest_accuracy'))}</span></td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<h2>Summary over seeds</h2><p class=sub>% , mean ± sample std.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table>"
    )


def _inversion_section(report: Mapping[str, Any]) -> str:
    """Model inversion: metrics table, trade-off figure, masked-pixel check, image grids."""
    from privlab.studies.targets.inversion_report import (
        first_seed_grids,
        grid_figure,
        inversion_table,
        masked_note,
        per_class_figure,
        tau_note,
        tradeoff_figure,
    )

    header, cells = inversion_table(report)
    if not cells:
        return ""
    tau = tau_note(report)
    parts = [
        "<h2>Model inversion</h2><p class=sub>Evaluator Acc@1 / Acc@5 and 1-NN accuracy of the "
        "reconstructions (%); success by distance (%): <i>within τ</i>, the nearest private "
        "image of the class is within τ in pixel MSE, and <i>Acc@1 &amp; τ</i>, the evaluator "
        "agrees and within τ (an image the evaluator accepts but that resembles no private "
        "image is not a success); pixel MSE to that nearest private image; KNN distance to the "
        "nearest private image of the class in the evaluator's feature space (lower = closer = "
        "more leakage), robust accuracy under the configured L∞ attack, mean nHSIC over hidden "
        "layers; mean ± std over seeds. — : not recorded (reports before the distance "
        "success).</p>",
        *([f"<p class=sub>{esc(tau)}</p>"] if tau else []),
        text_table(header, cells),
        *(f"<p class=sub>{esc(line)}</p>" for line in masked_note(report)),
        figure_html(tradeoff_figure, report, "attack success against robust accuracy"),
        figure_html(per_class_figure, report, "per-class reconstruction rate"),
    ]
    for name, attack in first_seed_grids(report):
        parts.append(f"<h3>{esc(name)} · {esc(attack.get('label'))}</h3>")
        parts.append(figure_html(grid_figure, attack, "reconstructions and nearest private images"))
    return "\n".join(parts)


ABOUT = """<h2>About the numbers</h2><p><b>Worst-case</b> A<sub>inf</sub> is the
membership inference accuracy with the threshold chosen by an oracle on the evaluation
members and non-members themselves &mdash; the metric reported by Song, Shokri &amp;
Mittal (CCS 2019). It is an optimistic (upper) estimate of what an attacker achieves.
<b>Honest</b> accuracy uses a threshold fitted only on data available to the attacker
(shadow or reference data) and then applied to the evaluation set. The membership
advantage is 2&middot;(A<sub>inf</sub> &minus; 0.5): 0 means no better than chance, 1
means perfect inference. AUC and TPR at low FPR are threshold-free views of the same
scores; TPR intervals are exact 95% Clopper&ndash;Pearson intervals.</p>"""


def targets_html(report: Mapping[str, Any]) -> str:
    """The targets study's section, from its flat view (:func:`..study.flat_view`)."""
    targets = targets_of(report)
    parts = [
        _splits_table(report),
        _summary_table(report),
        _utility_table(targets),
        _membership_table(targets),
        promise_html(targets),
    ]
    if attack_labels(targets):
        parts.append("<h2>Membership advantage</h2>")
        parts.append(figure_html(advantage_bar_figure, report, "advantage per target and attack"))
    if any(t.get("sensitivity") for t in targets):
        parts.append(
            "<h2>Leave-out sensitivity</h2><p class=sub>Song et al. Fig. 2: "
            "confidence on a training point with it in the training set minus "
            "without it (retrained), sorted.</p>"
        )
        parts.append(figure_html(sensitivity_figure, report, "sensitivity per removed point"))
    parts.append(_inversion_section(report))
    parts.append("<h2>Targets</h2>")
    parts += [_target_section(t) for t in targets] or [f"<p>{DASH}</p>"]
    parts.append(ABOUT)
    return "\n".join(parts)
