"""Render a ``report.json`` dict (schema_version 1) as one self-contained HTML page.

The page has no external assets: CSS is inline and figures are base64 PNG ``data:`` URIs
(see :mod:`privlab.experiment.figures`).  Every string taken from the report is
HTML-escaped, and missing optional values render as an em dash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from privlab.experiment.aggregate import (
    UTILITY_COLUMNS,
    UTILITY_KEYS,
    aggregate_targets,
    as_float,
    targets_of,
)
from privlab.experiment.aggregate import format_pm as pm
from privlab.experiment.figures import (
    advantage_bar_figure,
    exposure_figure,
    loss_histogram_figure,
    most_exposed_attack,
    roc_figure,
    sensitivity_figure,
)
from privlab.experiment.html_format import (
    DASH,
    TPR_FPRS,
    attack_labels,
    esc,
    figure_html,
    find_attack,
    lookup_fpr,
    num,
    page,
    pct,
    sci,
    text_table,
)
from privlab.experiment.store import atomic_write_bytes

__all__ = ["comparison_table", "render_comparison_html", "render_html", "write_html"]


def _privacy(privacy: Any) -> str:
    if not isinstance(privacy, Mapping):
        return DASH
    eps, delta = as_float(privacy.get("epsilon")), as_float(privacy.get("delta"))
    if eps is None:
        return DASH
    text = f"ε={sci(eps, '.3g')}" + (f", δ={sci(delta)}" if delta is not None else "")
    acc = privacy.get("accountant")
    return f'<span title="accountant: {esc(acc)}">{text}</span>' if acc else text


def _run_info(report: Mapping[str, Any]) -> str:
    seeds = report.get("seeds") or ([report["seed"]] if report.get("seed") is not None else [])
    versions = report.get("versions") or {}
    timings = report.get("timings") or {}
    data = report.get("data") or {}
    items = [
        ("seeds", ", ".join(esc(s) for s in seeds) or DASH),
        ("device", esc(report.get("device"))),
        ("versions", " · ".join(f"{esc(k)} {esc(v)}" for k, v in versions.items()) or DASH),
        ("timings", " · ".join(f"{esc(k)} {num(v, '.1f')} s" for k, v in timings.items()) or DASH),
        ("data", esc(data.get("name"))),
        ("schema", esc(report.get("schema_version"))),
    ]
    info = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    rows = []
    for seed, split in (data.get("splits") or {}).items():
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
    splits = (
        "<table><tr><th>split seed</th><th>members</th><th>non-members</th><th>population</th>"
        f"<th>sha256</th></tr>{''.join(rows)}</table>"
        if rows
        else ""
    )
    return f'<h2>Run</h2><dl class="info">{info}</dl>{splits}'


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
        value = pct(lookup_fpr(m.get("tpr_at_fpr"), fpr))
        ci = lookup_fpr(m.get("tpr_at_fpr_ci"), fpr)
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            tip = f"95% Clopper–Pearson interval: {pct(ci[0])} – {pct(ci[1])}"
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
        "Clopper–Pearson interval).</p>"
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
    figs = figure_html(roc_figure, t, "ROC (log-log)") if t.get("attacks") else ""
    figs += figure_html(loss_histogram_figure, t, "loss: members vs non-members")
    if most_exposed_attack(t) is not None:
        figs += figure_html(exposure_figure, t, "most exposed training points")
    return f'<h3>{esc(t.get("name"))}</h3><p class="sub">{meta}</p><div class="figs">{figs}</div>'


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
    from privlab.experiment.inversion_report import (
        first_seed_grids,
        grid_figure,
        inversion_table,
        masked_note,
        per_class_figure,
        tradeoff_figure,
    )

    header, cells = inversion_table(report)
    if not cells:
        return ""
    parts = [
        "<h2>Model inversion</h2><p class=sub>Evaluator Acc@1 / Acc@5 and 1-NN accuracy of the "
        "reconstructions (%), KNN distance to the nearest private image of the class in the "
        "evaluator's feature space (lower = closer = more leakage), robust accuracy under the "
        "configured L∞ attack, mean nHSIC over hidden layers; mean ± std over seeds.</p>",
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


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML document."""
    config = report.get("config") or {}
    name = config.get("name") or "privlab report"
    targets = targets_of(report)
    parts = [f"<h1>{esc(name)}</h1>"]
    if config.get("description"):
        parts.append(f"<p>{esc(config.get('description'))}</p>")
    if report.get("kind") in ("reconstruction", "gradient_inversion"):
        from privlab.experiment import gradient_inversion_report, reconstruction_report

        section = (
            reconstruction_report
            if report.get("kind") == "reconstruction"
            else gradient_inversion_report
        )
        parts += [_run_info(report), section.html_section(report)]
        cfg = json.dumps(config, indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>Config</summary><pre>{esc(cfg)}</pre></details>")
        return page(esc(name), "\n".join(parts))
    parts += [
        _run_info(report),
        _summary_table(report),
        _utility_table(targets),
        _membership_table(targets),
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
    if report.get("gradient_inversion"):
        from privlab.experiment.gradient_inversion_report import html_section

        parts.append(html_section(report))
    parts.append("<h2>Targets</h2>")
    parts += [_target_section(t) for t in targets] or [f"<p>{DASH}</p>"]
    parts.append(ABOUT)
    cfg = json.dumps(config, indent=2, sort_keys=True, default=str)
    parts.append(f"<details><summary>Config</summary><pre>{esc(cfg)}</pre></details>")
    return page(esc(name), "\n".join(parts))


def write_html(report: Mapping[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path`` atomically (temp file + ``os.replace``)."""
    atomic_write_bytes(Path(path), render_html(report).encode("utf-8"))


def comparison_table(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (run, target), raw fractions (None where missing).

    Keys: ``run``, ``target``, ``seed``, ``test_acc``, ``adv_test_acc`` and, for every
    attack label seen in any run, ``"<label>/accuracy"``, ``"<label>/advantage"``,
    ``"<label>/auc"`` and ``"<label>/tpr@1%"``.  All rows share the same keys.
    """
    labels = list(attack_labels([t for _, r in reports for t in targets_of(r)]))
    rows = []
    for run, report in reports:
        for t in targets_of(report):
            u = t.get("utility") or {}
            row: dict[str, Any] = {
                "run": run,
                "target": t.get("name"),
                "seed": t.get("seed"),
                "test_acc": as_float(u.get("test_acc")),
                "adv_test_acc": as_float(u.get("adv_test_acc")),
            }
            for lab in labels:
                m = (find_attack(t, lab) or {}).get("metrics") or {}
                row[f"{lab}/accuracy"] = as_float(m.get("accuracy"))
                row[f"{lab}/advantage"] = as_float(m.get("advantage"))
                row[f"{lab}/auc"] = as_float(m.get("auc"))
                row[f"{lab}/tpr@1%"] = as_float(lookup_fpr(m.get("tpr_at_fpr"), 0.01))
            rows.append(row)
    return rows


def render_comparison_html(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """:func:`comparison_table` as a self-contained HTML page."""
    rows = comparison_table(reports)
    labels = list(attack_labels([t for _, r in reports for t in targets_of(r)]))
    sub = ("A<sub>inf</sub>", "adv", "AUC", "TPR@1%")
    head1 = '<th rowspan="2">run</th><th rowspan="2">target</th><th rowspan="2">seed</th>'
    head1 += '<th rowspan="2">test</th><th rowspan="2">adv-test</th>'
    head1 += "".join(f'<th colspan="4">{esc(lab)}</th>' for lab in labels)
    head2 = "".join(f"<th>{s}</th>" for _ in labels for s in sub)
    body = []
    for r in rows:
        cells = [f"<td>{esc(r['run'])}</td><td>{esc(r['target'])}</td>"]
        cells.append(f'<td class="n">{esc(r["seed"])}</td>')
        cells += [f'<td class="n">{pct(r[k])}</td>' for k in ("test_acc", "adv_test_acc")]
        for lab in labels:
            vals = [pct(r[f"{lab}/accuracy"]), pct(r[f"{lab}/advantage"])]
            vals += [num(r[f"{lab}/auc"]), pct(r[f"{lab}/tpr@1%"])]
            cells += [f'<td class="n">{v}</td>' for v in vals]
        body.append(f"<tr>{''.join(cells)}</tr>")
    table = f"<table><tr>{head1}</tr><tr>{head2}</tr>{''.join(body)}</table>"
    runs = ", ".join(esc(label) for label, _ in reports) or DASH
    intro = f"<h1>Run comparison</h1><p>Runs: {runs}. Accuracies in %, worst-case A<sub>inf</sub>."
    return page("privlab run comparison", intro + "</p>" + (table if rows else f"<p>{DASH}</p>"))
