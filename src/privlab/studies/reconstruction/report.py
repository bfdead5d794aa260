"""The reconstruction section of a report: tables, ROC curves, reconstructions beside their
nearest training images, privacy–utility trade-off and empirical success against the ReRo bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privlab.report.figures import image_pairs_figure, new_figure, placeholder, to_b64
from privlab.report.html_format import esc, figure_html, num, text_table
from privlab.report.image_codec import decode_image_hex
from privlab.report.levels import reconstruction_reading

WEAK_HEADER = [
    "variant",
    "N",
    "shadows",
    "σ_init",
    "ε",
    "audited ε ≥",
    "head acc",
    "TPR*",
    "FPR*",
    "TPR@FPR=0.01",
    "held-out FPR*",
    "prior-draw TPR*",
    "ReRo bound",
]
INFORMED_HEADER = ["study", "ε", "MSE", "NN-oracle success", "ReRo γ (RDP)", "κe^ε + δ"]
RELEASED_HEADER = [
    "members attacked",
    "reconstructed",
    "95 % CI",
    "chance",
    "labels correct",
    "median MSE",
    "distance from optimum",
]


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}"


def _g(x: Any) -> str:
    return "—" if x is None else f"{float(x):.3g}"


def weak_variants(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((report.get("weak_adversary") or {}).get("variants") or [])


def weak_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per weak-adversary variant (rates in %)."""
    rows = []
    for v in weak_variants(report):
        privacy, bound = v.get("privacy") or {}, v.get("bound") or {}
        rows.append(
            [
                str(v.get("name")),
                str(v.get("n")),
                str(v.get("shadows")),
                _g(v.get("sigma_init")),
                _g(privacy.get("epsilon")) if privacy else "∞",
                _g((v.get("dp_audit") or {}).get("epsilon")),
                _pct((v.get("utility") or {}).get("accuracy")),
                _pct(v.get("tpr")),
                _pct(v.get("fpr")),
                _pct(v.get("tpr_at_fpr_0.01")),
                _pct((v.get("held_out") or {}).get("fpr")),
                _pct(v.get("prior_draw_tpr")),
                _pct(bound.get("tpr_bound")) if bound else "—",
            ]
        )
    return WEAK_HEADER, rows


def theorem1_lines(report: Mapping[str, Any]) -> list[str]:
    """Per variant, how far apart the paper's three ROC curves are (Theorem 1 says: not at all
    when the logit of the min-MSE is Gaussian under both hypotheses)."""
    lines = []
    for v in weak_variants(report):
        check = (v.get("roc") or {}).get("theorem1")
        if not check:
            continue
        lines.append(
            f"{v.get('name')}: Theorem 1 check, largest |ΔTPR| for FPR ≥ "
            f"{_g(check.get('fpr_from'))}: cumulative vs Neyman–Pearson "
            f"{_g(check.get('max_gap_cumulative_np'))}, Neyman–Pearson vs Eq. 6 "
            f"{_g(check.get('max_gap_np_analytic'))}, cumulative vs Eq. 6 "
            f"{_g(check.get('max_gap_cumulative_analytic'))}"
        )
    return lines


def defended_lines(report: Mapping[str, Any]) -> list[str]:
    """The largest ε meeting TPR ≤ 0.015 at FPR = 0.01, per training-set size N."""
    out = []
    for n, d in ((report.get("weak_adversary") or {}).get("defended_epsilon") or {}).items():
        if d.get("measured") is None:
            out.append(f"N = {n}: no DP-SGD run meets TPR ≤ {d.get('limit')} at FPR = 0.01")
        else:
            out.append(
                f"N = {n}: largest ε with TPR ≤ {d.get('limit')} at FPR = 0.01: "
                f"{_g(d['measured'])} (measured), {_g(d['interpolated'])} (interpolated in log ε)"
            )
    return out


def informed_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The informed adversary's studies: closed form, RecoNN (init known or not), DP-SGD."""
    inf = report.get("informed_adversary") or {}
    rows = []
    cf = inf.get("closed_form")
    if cf:
        rows.append(
            [
                f"closed form, softmax regression ({cf.get('targets')} targets; exact recoveries)",
                "∞",
                f"{float(cf.get('mse_max', 0)):.1e} (max)",
                _pct(cf.get("exact")),
                "—",
                "—",
            ]
        )
    for r in inf.get("reconnn") or []:
        known = "known" if r.get("known_init") else "unknown"
        success = _pct(r.get("nn_oracle_success"))
        rows.append([f"RecoNN, MLP, init {known}", "∞", _g(r.get("mse")), success, "—", "—"])
    for r in inf.get("dp") or []:
        eps = r.get("epsilon_spent")
        head = r.get("head") or {"hidden": None}  # older runs: a single-layer head
        model = "single-layer head" if head.get("hidden") is None else f"MLP ({head['hidden']})"
        rows.append(
            [
                f"RecoNN, {model}, " + ("no DP" if eps is None else "DP-SGD"),
                "∞" if eps is None else _g(eps),
                _g(r.get("mse")),
                _pct(r.get("nn_oracle_success")) + _ci_text(r),
                _pct(r.get("gamma")) + _verdict(r) if eps is not None else "—",
                _pct(r.get("gamma_dp")) if eps is not None else "—",
            ]
        )
    return INFORMED_HEADER, rows


def _ci_text(row: Mapping[str, Any]) -> str:
    ci = row.get("success_ci")
    return f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else ""


def _verdict(row: Mapping[str, Any]) -> str:
    """Whether the success exceeds the bound beyond its CI, and what the victims can resolve."""
    if "bound_violated" not in row:
        return ""
    if row["bound_violated"]:
        return " VIOLATED"
    detectable = row.get("detectable_rate")
    return " (can fail: no)" if detectable is None else f" (fails above {_pct(detectable)})"


def released_closed_form(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return (report.get("released_model") or {}).get("closed_form") or {}


RELEASED_WEAK_HEADER = [
    "classes reconstructed",
    "95 % CI",
    "shadow heads",
    "TPR* (validation heads)",
    "FPR* (null weights)",
    "TPR@FPR=0.01",
    "τ",
]


def released_weak(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return (report.get("released_model") or {}).get("weak_adversary") or {}


def released_weak_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The weak adversary on a released head (rates in %), when it applies."""
    w = released_weak(report)
    if not w.get("applicable"):
        return RELEASED_WEAK_HEADER, []
    r = w.get("released") or {}
    lo, hi = r.get("rate_ci") or (None, None)
    row = [
        f"{r.get('reconstructed')} of {r.get('classes')}",
        f"{_pct(lo)}–{_pct(hi)}",
        str(w.get("shadows")),
        _pct(w.get("tpr")),
        _pct(w.get("fpr")),
        _pct(w.get("tpr_at_fpr_0.01")),
        _g(w.get("tau")),
    ]
    return RELEASED_WEAK_HEADER, [row]


def released_weak_lines(report: Mapping[str, Any]) -> list[str]:
    """The headline of the weak adversary on a released head, or why it does not apply."""
    w = released_weak(report)
    if not w:
        return []
    if not w.get("applicable"):
        return [f"weak adversary on the released head: not applicable ({w.get('reason')})"]
    r = w.get("released") or {}
    lo, hi = r.get("rate_ci") or (0.0, 1.0)
    return [
        f"weak adversary on the released head: {r.get('reconstructed')} of {r.get('classes')} "
        f"classes reconstructed within τ of a member (95 % CI {_pct(lo)}–{_pct(hi)} %); on heads "
        f"trained like it {_pct(w.get('tpr'))} % (TPR*), against {_pct(w.get('fpr'))} % from "
        "null weights (FPR*); " + reconstruction_reading(r.get("rate"), lo, hi, w.get("fpr"))
    ]


def released_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The closed-form attack on a released model (rates in %), when it applies."""
    c = released_closed_form(report)
    if not c.get("applicable"):
        return RELEASED_HEADER, []
    lo, hi = c.get("success_ci") or (None, None)
    row = [
        f"{c.get('targets')} of {c.get('members')}",
        _pct(c.get("success")),
        f"{_pct(lo)}–{_pct(hi)}",
        _pct(c.get("null")),
        _pct(c.get("labels_correct")),
        _g(c.get("mse_median")),
        _g(c.get("stationarity")),
    ]
    return RELEASED_HEADER, [row]


def released_lines(report: Mapping[str, Any]) -> list[str]:
    """The headline of the closed-form attack on a released model, or why it does not apply."""
    c = released_closed_form(report)
    if not c:
        return []
    if not c.get("applicable"):
        return [
            f"reconstruction from the released weights: not applicable ({c.get('reason')})",
            *released_weak_lines(report),
        ]
    lo, hi = c.get("success_ci") or (0.0, 1.0)
    return [
        "reconstruction from the released weights (informed adversary, closed form): "
        f"{_pct(c.get('success'))} % of {c.get('targets')} members reconstructed "
        f"(95 % CI {_pct(lo)}–{_pct(hi)} %; a guess names one of {c.get('pool')} records), "
        f"labels {_pct(c.get('labels_correct'))} % right, median MSE "
        f"{_g(c.get('mse_median'))}; "
        + reconstruction_reading(c.get("success"), lo, hi, c.get("null")),
        *released_weak_lines(report),
    ]


def weak_roc_figure(report: Mapping[str, Any]) -> str:
    """Cumulative (solid) and Neyman–Pearson (dotted) ROC per variant, log FPR."""
    variants = [v for v in weak_variants(report) if (v.get("roc") or {}).get("fpr")]
    if not variants:
        return placeholder("no reconstruction ROC")
    fig = new_figure(width=5.5, height=4.2)
    ax = fig.add_subplot()
    floor = 1e-3
    for v in variants:
        roc = v["roc"]
        (line,) = ax.plot(
            [max(f, floor) for f in roc["fpr"]], roc["tpr"], lw=1.5, label=str(v["name"])
        )
        if roc.get("np_fpr"):
            ax.plot(
                [max(f, floor) for f in roc["np_fpr"]],
                roc["np_tpr"],
                lw=1.0,
                ls=":",
                color=line.get_color(),
            )
    chance = [floor ** (1 - i / 100) for i in range(101)]  # TPR = FPR, curved on a log x-axis
    ax.plot(chance, chance, ls="--", color="0.6", lw=1, label="chance")
    ax.axvline(0.01, color="0.8", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("FPR (null weights)")
    ax.set_ylabel("TPR")
    ax.set_title("reconstruction ROC (dotted: Neyman–Pearson)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return to_b64(fig)


def examples_figure(examples: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """Reconstructions (top) above the nearest training image of their class (bottom)."""
    pairs = [
        (
            decode_image_hex(e["image"]),
            decode_image_hex(e["nearest"]),
            f"{e.get('class')} {'✓' if e['success'] else '✗'}" if "success" in e else "",
        )
        for e in examples
        if isinstance(e, Mapping) and "image" in e
    ]
    return image_pairs_figure(
        pairs, title or "reconstruction (top) and nearest training image (bottom)"
    )


def tradeoff_figure(report: Mapping[str, Any]) -> str:
    """Head accuracy and TPR@FPR=0.01 against ε (DP variants) — Fig. 4's trade-off; one set
    of lines per head size N (solid, dashed, …), one colour per measure."""

    def eps(v: Mapping[str, Any]) -> float:
        return float(v["privacy"]["epsilon"])

    dp = [v for v in weak_variants(report) if (v.get("privacy") or {}).get("epsilon") is not None]
    if not dp:
        return placeholder("no DP-SGD variants")
    dp.sort(key=eps)
    fig = new_figure(width=5.5, height=4.0)
    ax = fig.add_subplot()
    sizes = sorted({int(v["n"]) for v in dp})
    measures = (("head test accuracy", "C0", "o", lambda v: v["utility"]["accuracy"]),
                ("TPR @ FPR = 0.01", "C1", "s", lambda v: v["tpr_at_fpr_0.01"]),
                ("TPR* (τ)", "C2", "^", lambda v: v["tpr"]))  # fmt: skip
    for i, n in enumerate(sizes):
        rows = [v for v in dp if int(v["n"]) == n]
        tag = f"N = {n}: " if len(sizes) > 1 else ""
        for label, colour, marker, value in measures:
            ax.plot([eps(v) for v in rows], [value(v) for v in rows], marker=marker,
                    ls=("-", "--", ":", "-.")[i % 4], color=colour, label=tag + label)  # fmt: skip
    ax.axhline(0.015, color="0.6", ls="--", lw=1, label="TPR = 0.015")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("ε (δ = N^−1.1)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("DP-SGD heads: utility and reconstruction", fontsize=9)
    return to_b64(fig)


def bound_figure(report: Mapping[str, Any]) -> str:
    """Empirical success against the ReRo bound over ε: informed NN-oracle success with γ
    (RDP of DP-SGD, and κe^ε + δ for (ε, δ)-DP), and the weak adversary's TPR* with its union
    bound."""
    inf = report.get("informed_adversary") or {}
    curve = inf.get("bound_curve")
    weak = [v for v in weak_variants(report) if v.get("bound")]
    if not curve and not weak:
        return placeholder("no DP-SGD runs")
    fig = new_figure(width=5.5, height=4.0)
    ax = fig.add_subplot()
    if curve:
        ax.plot(curve["epsilon"], curve["gamma"], "-", label="ReRo γ (RDP, Thm 2)")
        ax.plot(curve["epsilon"], curve["gamma_dp"], "--", label="κ·e^ε + δ ((ε, δ)-DP, Cor. 3)")
        pts = [r for r in inf.get("dp") or [] if r.get("epsilon_spent") is not None]
        ax.plot(
            [r["epsilon_spent"] for r in pts],
            [r["nn_oracle_success"] for r in pts],
            "o",
            label="informed: NN-oracle success",
        )
    if weak:
        ax.plot(
            [v["privacy"]["epsilon"] for v in weak],
            [v["bound"]["tpr_bound"] for v in weak],
            "v:",
            label="weak: bound on TPR*",
        )
        ax.plot(
            [v["privacy"]["epsilon"] for v in weak],
            [v["tpr"] for v in weak],
            "s",
            label="weak: TPR*",
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("ε")
    ax.set_ylabel("reconstruction success")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("empirical success ≤ ReRo bound", fontsize=9)
    return to_b64(fig)


def released_html(report: Mapping[str, Any]) -> str:
    """The closed-form reconstruction of a released model's members (or why it does not apply)."""
    released = released_closed_form(report)
    if not released:
        return ""
    parts = [
        "<h2>Released model: its members reconstructed from its weights</h2>",
        "<p class=sub>The informed adversary of Balle et al. knows every member but the one "
        "it attacks and the training objective (mean cross-entropy + (λ/2)·‖θ‖², λ = "
        f"{esc((released.get('attack') or {}).get('l2'))}); at that optimum a softmax "
        "regression gives each member back in closed form. Reconstructed: closer to the "
        "member than to any other record of the data (nearest-neighbour oracle). Distance "
        "from optimum: the objective's gradient norm relative to the per-example gradients "
        "(0 at the optimum the attack assumes). Rates in %.</p>",
        *(f"<p>{esc(line)}</p>" for line in released_lines(report)),
    ]
    if released.get("applicable"):
        parts += [
            text_table(*released_table(report)),
            figure_html(
                examples_figure,
                released.get("examples") or [],
                "closed form: reconstruction (top), member (bottom)",
            ),
        ]
    weak = released_weak(report)
    if weak.get("applicable"):
        parts += [
            f"<h3>Weak adversary (Maciazek &amp; Allison) on head {esc(weak.get('module'))}</h3>",
            "<p class=sub>Shadow heads trained like the released one on sets of the attacker's "
            "population; a class counts as reconstructed when the reconstructor's image lies "
            "within τ of a member of the class. TPR* and FPR*: the same test on validation "
            "heads and on null weights. Rates in %.</p>",
            text_table(*released_weak_table(report)),
            figure_html(
                examples_figure,
                (weak.get("released") or {}).get("examples") or [],
                "weak adversary: reconstruction (top), nearest member of the class (bottom)",
            ),
        ]
    return "\n".join(parts)


def html_section(report: Mapping[str, Any]) -> str:
    """Reconstruction from weights: the weak and the informed adversary (tables and figures)."""
    parts = []
    weak = report.get("weak_adversary")
    if weak:
        parts += [
            "<h2>Weak adversary: reconstruction of transfer-learned heads' training images</h2>",
            f"<p class=sub>Dataset {esc(weak.get('dataset'))} ({esc(weak.get('task'))}); "
            f"τ = {num(weak.get('tau'), '.4f')} (mean nearest-neighbour MSE from validation to "
            "training images of the whole dataset, as the paper defines it, or between the "
            "attacker's two priors in older runs; images in [−1, 1]). TPR*: a validation head's "
            "reconstruction lies within τ of one of its training images of the class; FPR*: the "
            "same test on reconstructions from null weights N(θ̄, Cov) of the shadow heads; "
            "held-out: another head's training images; prior draw: a random image of the class "
            "instead of a reconstruction. Rates in %.</p>",
            text_table(*weak_table(report)),
            figure_html(weak_roc_figure, report, "reconstruction ROC per variant"),
            *(f"<p class=sub>{esc(line)}</p>" for line in theorem1_lines(report)),
        ]
        if any(v.get("privacy") for v in weak_variants(report)):
            parts += [f"<p class=sub>{esc(line)}</p>" for line in defended_lines(report)]
            parts.append(figure_html(tradeoff_figure, report, "privacy–utility trade-off"))
        for v in weak_variants(report):
            parts.append(
                figure_html(
                    examples_figure,
                    v.get("examples") or [],
                    f"{v.get('name')}: reconstructions and nearest training images",
                )
            )
    informed = report.get("informed_adversary")
    if informed:
        parts += [
            "<h2>Informed adversary (Balle et al.)</h2>",
            f"<p class=sub>{esc(informed.get('dataset'))}: D₋ of {esc(informed.get('fixed'))} "
            f"known points, a prior of {esc(informed.get('prior'))} images (κ = 1/"
            f"{esc(informed.get('prior'))} for the nearest-neighbour oracle). Success (%): the "
            "reconstruction is closer to the target than to any other prior image.</p>",
            text_table(*informed_table(report)),
        ]
        for r in informed.get("reconnn") or []:
            init = "known" if r.get("known_init") else "unknown"
            parts.append(
                figure_html(
                    examples_figure,
                    r.get("examples") or [],
                    f"RecoNN, initialisation {init}: reconstruction (top), target (bottom)",
                )
            )
    parts.append(released_html(report))
    if (informed or {}).get("bound_curve") or any(v.get("bound") for v in weak_variants(report)):
        parts.append(figure_html(bound_figure, report, "empirical success against the ReRo bound"))
    return "\n".join(parts)
