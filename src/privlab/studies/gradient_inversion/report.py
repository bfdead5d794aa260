"""The gradient-inversion section of a report (Liu et al. 2025): per-point table, defences at
equal utility loss, the privacy–utility scatter (Fig. 3), attack against attack per defence
(Fig. 4) and reconstruction grids (Fig. 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from privlab.report.figures import new_figure, placeholder, to_b64
from privlab.report.html_format import esc, figure_html, text_table
from privlab.report.image_codec import decode_image_hex

MARKERS = "os^Dv<>p*h"


def section_of(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report.get("gradient_inversion") or {}


def _f(x: Any, spec: str = ".2f") -> str:
    return "—" if x is None else format(float(x), spec)


def loss_text(x: Any, decimals: int = 3) -> str:
    """A utility loss in nats: ``decimals`` decimals, or 3 significant digits once it is
    large (a diverged FedAvg run ends at a training loss of 10^4 or more)."""
    return _f(x, f".{decimals}f" if x is None or abs(float(x)) < 1000 else ".3g")


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.0f}"


def _zeros(point: Mapping[str, Any]) -> str:
    """The update's zero entries before → after the defence, in % ("—" in older reports)."""
    sparsity = point.get("sparsity") or {}
    before, after = sparsity.get("zero_fraction_before"), sparsity.get("zero_fraction_after")
    if before is None or after is None:
        return "—"
    return f"{100 * float(before):.1f}→{100 * float(after):.1f}"


def _lr_factor(util: Mapping[str, Any]) -> str:
    """The tuned server learning rate as a multiple of the base rate ("—": not tuned)."""
    tuned = util.get("lr_tuning") or {}
    return "—" if tuned.get("factor") is None else f"×{float(tuned['factor']):g}"


def points_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per client setting × defence point: the update's zero entries before → after
    the defence, each attack's PSNR, the strongest attack's RMSE / SSIM / identification rate,
    and the defence's utility cost (with the tuned server learning rate's factor)."""
    sec = section_of(report)
    attacks = list(sec.get("attacks") or [])
    header = [
        "client",
        "defence",
        "zeros % before→after",
        *(f"PSNR {a}" for a in attacks),
        "best RMSE",
        "best SSIM",
        "identified %",
        "labels %",
        "utility loss",
        "acc loss %",
        "ε",
        "audited ε ≥",
        "server lr",
    ]
    rows = []
    for s in sec.get("settings") or []:
        for p in s.get("points") or []:
            best, util = p.get("best") or {}, p.get("utility") or {}
            rows.append(
                [
                    s["client"]["label"],
                    p["label"],
                    _zeros(p),
                    *(_f((p["attacks"].get(a) or {}).get("psnr")) for a in attacks),
                    _f(best.get("rmse"), ".3f"),
                    _f(best.get("ssim"), ".3f"),
                    _pct(best.get("identified")),
                    _pct(best.get("label_set_accuracy")),
                    loss_text(util.get("utility_loss")),
                    _pct(util.get("accuracy_loss")),
                    _f(util.get("epsilon"), ".3g"),
                    _f(util.get("audited_epsilon"), ".3g"),
                    _lr_factor(util),
                ]
            )
    return header, rows


def matched_table(
    report: Mapping[str, Any], quality: str = "rmse"
) -> tuple[list[str], list[list[str]]]:
    """Every defence's strongest-attack ``quality`` at common utility-loss levels (— where a
    defence's sweep does not reach the level) and the best defence there."""
    sec = section_of(report)
    defences: list[str] = []
    for s in sec.get("settings") or []:
        for row in ((s.get("matched") or {}).get(quality) or {}).get("rows") or []:
            defences += [k for k in row if k not in ("utility_loss", "best_defence")]
    defences = list(dict.fromkeys(defences))
    header = ["client", "utility loss", *defences, "best defence"]
    rows = []
    for s in sec.get("settings") or []:
        for row in ((s.get("matched") or {}).get(quality) or {}).get("rows") or []:
            cells = [row.get(d) for d in defences]
            rows.append(
                [
                    s["client"]["label"],
                    loss_text(row["utility_loss"]),
                    *("—" if c is None or c != c else _f(c, ".3f") for c in cells),
                    str(row.get("best_defence") or "—"),
                ]
            )
    return header, rows


#: a utility loss beyond this many nats is a FedAvg run that diverged (a 10-class model starts
#: at ln 10 ≈ 2.3); the trade-off figure puts such points at this value
DIVERGED = 10.0


def tradeoff_figure(section: Mapping[str, Any]) -> str:
    """Fig. 3 analogue: the strongest attack's RMSE against each defence point's utility loss
    (on a symmetric-log axis), one colour per defence, one marker per client setting (the
    undefended point in black)."""
    settings = section.get("settings") or []
    pts = [
        (i, p)
        for i, s in enumerate(settings)
        for p in s.get("points") or []
        if (p.get("utility") or {}).get("utility_loss") is not None
        and (p.get("best") or {}).get("rmse") is not None
    ]
    if not pts:
        return placeholder("no utility measured")
    fig = new_figure(width=6.0, height=4.2)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(p["label_defence"] for _, p in pts))
    colours = {n: f"C{k % 10}" for k, n in enumerate(names)}
    for name in names:
        for i, s in enumerate(settings):
            mine = [p for j, p in pts if j == i and p["label_defence"] == name]
            if not mine:
                continue
            mine.sort(key=lambda p: p["rank"])
            label = name if len(settings) == 1 else f"{name}, {s['client']['label']}"
            ax.plot(
                [min(DIVERGED, max(0.0, p["utility"]["utility_loss"])) for p in mine],
                [p["best"]["rmse"] for p in mine],
                marker=MARKERS[i % len(MARKERS)],
                color="k" if mine[0]["defence"] == "none" else colours[name],
                ls="-" if len(mine) > 1 else "none",
                label=label,
            )
    # symmetric-log: linear up to 0.01 nats (about the run-to-run noise floor), logarithmic
    # beyond; a diverged run (10^4 nats and more) stands at the right edge
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(-0.002, 1.5 * DIVERGED)
    if any(p["utility"]["utility_loss"] > DIVERGED for _, p in pts):
        ax.axvline(DIVERGED, color="0.6", lw=0.8, ls=":")
        on_axis = ax.get_xaxis_transform()  # x in data, y in axes units
        ax.text(DIVERGED, 0.02, "diverged ", transform=on_axis, rotation=90, ha="right")
    ax.set_xlabel("utility loss (final training loss − undefended; symlog)")
    ax.set_ylabel("best RMSE of the attacks (higher: better defence)")
    ax.set_title("defence strength against utility loss", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return to_b64(fig)


def attacks_figure(section: Mapping[str, Any]) -> str:
    """Fig. 4 analogue: each attack's PSNR at every defence point (first client setting),
    with the mean-image baseline."""
    settings = section.get("settings") or []
    attacks = list(section.get("attacks") or [])
    if not settings or not attacks:
        return placeholder("no attacks")
    s = settings[0]
    points = s.get("points") or []
    fig = new_figure(width=max(5.0, 0.55 * len(points) + 1.5), height=4.2, bottom=1.6)
    ax = fig.add_subplot()
    width = 0.8 / len(attacks)
    for k, a in enumerate(attacks):
        values = [(p["attacks"].get(a) or {}).get("psnr") for p in points]
        ax.bar(
            [i + (k - (len(attacks) - 1) / 2) * width for i in range(len(points))],
            [0.0 if v is None else v for v in values],
            width=width,
            label=a,
        )
    base = (s.get("baselines") or {}).get("mean_image", {}).get("psnr")
    if base is not None:
        ax.axhline(base, color="0.4", ls="--", lw=1, label="mean image")
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([p["label"] for p in points], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"reconstruction PSNR per defence ({s['client']['label']})", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return to_b64(fig)


def grid_figure(setting: Mapping[str, Any]) -> str:
    """Fig. 2 analogue: the client's first batch (top row), then each defence point's
    reconstructions by every attack, in the batch's order."""
    originals = setting.get("originals") or []
    rows: list[tuple[str, list[Any]]] = [("private batch", originals)]
    for p in setting.get("points") or []:
        for a, images in (p.get("examples") or {}).items():
            rows.append((f"{p['label']}\n{a}", images))
    cols = max((len(images) for _, images in rows), default=0)
    if not originals or cols == 0:
        return placeholder("no reconstructions recorded")
    height = 0.4 + 0.8 * len(rows)
    fig = new_figure(width=1.8 + 0.8 * cols, height=height, bottom=0.05, top=0.35)
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(decode_image_hex(img), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=5, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=1.7 / (1.8 + 0.8 * cols), right=0.99, wspace=0.05, hspace=0.08)
    fig.suptitle(f"reconstructions ({setting['client']['label']})", fontsize=8, y=1 - 0.1 / height)
    return to_b64(fig)


def training_lines(report: Mapping[str, Any]) -> list[str]:
    """How long FedAvg ran per client setting: a fixed number of rounds, or until the
    undefended run converged (then every run of the setting lasts as long); "" in older
    reports that did not record it."""
    lines = []
    for s in section_of(report).get("settings") or []:
        base = s.get("baseline_utility") or {}
        rounds, conv = base.get("rounds"), base.get("convergence")
        if rounds is None:
            continue
        text = f"{s['client']['label']}: FedAvg ran {rounds} rounds"
        if conv:
            state = "converged" if conv.get("converged") else "hit the cap before converging"
            text += (
                f" (the undefended run {state}: no training-loss improvement of "
                f"{conv.get('tolerance')} nats for {conv.get('patience')} rounds, cap "
                f"{conv.get('max_rounds')}); every defended run trains as many rounds"
            )
        else:
            text += " (fixed)"
        lines.append(text)
    return lines


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The matched comparison in words: which defence protects best most often."""
    lines = []
    for s in section_of(report).get("settings") or []:
        for q, name in (("rmse", "best RMSE"), ("psnr", "best PSNR")):
            wins = ((s.get("matched") or {}).get(q) or {}).get("wins") or {}
            if wins:
                ranked = ", ".join(f"{d} {n}" for d, n in sorted(wins.items(), key=lambda t: -t[1]))
                lines.append(
                    f"{s['client']['label']}, by {name}: best defence at equal utility loss "
                    f"(levels won): {ranked}"
                )
    return lines


def html_section(report: Mapping[str, Any]) -> str:
    sec = section_of(report)
    if not sec:
        return ""
    model = sec.get("model") or {}
    state = (
        "at initialisation"
        if not sec.get("pretrain_epochs")
        else f"after {sec['pretrain_epochs']} epochs on the population"
    )
    parts = [
        f"<p class=sub>{esc(sec.get('dataset'))}, model {esc(model.get('name'))} {state} "
        f"(sha256 {esc(str(sec.get('model_sha256'))[:12])}); the honest-but-curious server "
        "inverts each client's (defended) update. Reconstructions are matched one-to-one to the "
        "private batch; <i>identified</i>: the reconstruction's nearest client image is its own; "
        "<i>best</i>: the strongest attack. Utility loss: final FedAvg training loss with the "
        "defence minus without it. <i>zeros % before→after</i>: the share of the update's "
        "entries that are exactly zero without and with the defence; <i>server lr</i>: the "
        "tuned server learning rate as a multiple of the base rate (tuned on the population, "
        "never the clients' data).</p>",
        text_table(*points_table(report)),
        *(f"<p class=sub>{esc(line)}</p>" for line in training_lines(report)),
    ]
    for s in sec.get("settings") or []:
        base = (s.get("baselines") or {}).get("mean_image") or {}
        floor = s.get("utility_noise_floor")
        noise = (
            ""
            if floor is None
            else f" Utility losses up to {_f(floor, '.3f')} (the spread of undefended FedAvg "
            "runs over seeds) count as none."
        )
        parts.append(
            f"<p class=sub>{esc(s['client']['label'])}: the members' mean image scores PSNR "
            f"{_f(base.get('psnr'))} dB, RMSE {_f(base.get('rmse'), '.3f')} (no attack).{noise}</p>"
        )
    header, rows = matched_table(report)
    if rows:
        parts += [
            "<h3>Defences at equal utility loss (best RMSE; higher protects more)</h3>",
            text_table(header, rows),
            *(f"<p class=sub>{esc(line)}</p>" for line in summary_lines(report)),
        ]
    parts += [
        figure_html(tradeoff_figure, sec, "defence strength against utility loss (Fig. 3)"),
        figure_html(attacks_figure, sec, "PSNR per defence and attack (Fig. 4)"),
    ]
    for s in sec.get("settings") or []:
        parts.append(
            figure_html(grid_figure, s, f"reconstructions, {s['client']['label']} (Fig. 2)")
        )
    return "\n".join(parts)
