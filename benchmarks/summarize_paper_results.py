"""Print every claim run in results/paper/ as markdown (mean ± std over seeds), for
docs/reproductions.md.

Usage: .venv/bin/python benchmarks/summarize_paper_results.py [ROOT]
       .venv/bin/python benchmarks/summarize_paper_results.py --beside SMALL FULL [KEYS]

``--beside`` prints the reconstruction and gradient-inversion tables of two claim runs (the
small-scale one and its full-data re-run, folder names under results/paper/) as one, each cell
"small · full"; rows are matched on their first KEYS cells (default 2: client and defence, or
arm and ε; KEYS=1 for the model-inversion table, one row per target). Rows of one run only
show "—" for the other. (Membership targets: benchmarks/compare_scales.py.)"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from privlab.report.schema import load_report
from privlab.report.stats import as_float, format_pm, markdown_table, mean_std
from privlab.studies.base import runs_of
from privlab.studies.targets.aggregate import aggregate_targets, markdown_summary
from privlab.studies.targets.inversion_report import (
    inversion_markdown,
    inversion_rows,
    inversion_table,
    robustness_correlation,
    tradeoff_figure,
)
from privlab.studies.targets.study import flat_view

FIGURES = Path("docs/figures")


def advantage_table(report: dict) -> str:
    """Per target and attack: advantage, honest accuracy, AUC and TPR at 0.1% / 1% FPR
    (mean ± std over seeds, %)."""
    lines = [
        "| target | attack | advantage | honest A_inf | AUC | TPR@0.1% FPR | TPR@1% FPR |",
        "| --- | --- | --: | --: | --: | --: | --: |",
    ]
    for row in aggregate_targets(report):
        for label, stats in row["attacks"].items():
            cells = [
                stats[k] for k in ("advantage", "honest_accuracy", "auc", "tpr@0.001", "tpr@0.01")
            ]
            lines.append(
                f"| {row['target']} | {label} | " + " | ".join(map(format_pm, cells)) + " |"
            )
    return "\n".join(lines)


def correlation_lines(report: dict) -> str:
    """Spearman ρ(robust accuracy, attack success) per inversion attack, without the targets
    that learned nothing about their classes (permuted labels)."""
    labels = list(dict.fromkeys(lab for r in inversion_rows(report) for lab in r["attacks"]))
    lines = []
    for label in labels:
        corr = robustness_correlation(report, label, exclude=("permuted_labels",))
        cells = [
            f"{key} ρ = {c['rho']:+.2f} (p = {c['p']:.3f})"
            for key in ("acc1", "knn_dist")
            if (c := corr[key]) is not None
        ]
        lines.append(f"- {label}, over {len(corr['targets'])} targets: " + ", ".join(cells))
    return "\n".join(lines) + "\n"


Table = tuple[list[str], list[list[str]]]


def _decimals(cell: str) -> int:
    return len(cell.split(".")[1]) if "." in cell else 0


def _seeds_cell(cells: list[str]) -> str:
    """One cell over the seeds: equal → itself; numbers → mean ± std (to the cells' own
    decimals, or 3 significant digits in exponent form); anything else → "a / b / c"."""
    if len(set(cells)) == 1:
        return cells[0]
    values = [as_float(c) for c in cells]
    if any(v is None for v in values):
        return " / ".join(cells)
    mean, std = mean_std(values)
    if any("e" in c.lower() for c in cells):
        return f"{mean:.3g} ± {std:.2g}"
    d = max(_decimals(c) for c in cells)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def seeds_table(tables: list[Table]) -> Table:
    """Per-seed tables of one shape as one table of mean ± std over the seeds; tables of
    different shapes (a seed with other rows) are stacked, each row tagged with its seed."""
    header, first = tables[0]
    if all(h == header and len(r) == len(first) for h, r in tables):
        rows = [
            [_seeds_cell(list(c)) for c in zip(*cells, strict=True)]
            for cells in zip(*(r for _, r in tables), strict=True)
        ]
        return header, rows
    return ["seed", *header], [[str(i), *r] for i, (_, rows) in enumerate(tables) for r in rows]


def _over_seeds(per_seed: list[list[Table]]) -> list[Table]:
    """The i-th table of every seed, as one table over the seeds (empty tables left out)."""
    return [
        seeds_table(list(tables))
        for tables in zip(*per_seed, strict=True)
        if any(rows for _, rows in tables)
    ]


def _print_tables(per_seed: list[list[Table]]) -> None:
    for table in _over_seeds(per_seed):
        print(markdown_table(*table) + "\n")


def _reconstruction_tables(run: dict) -> list[Table]:
    from privlab.studies.reconstruction import report as rr

    return [rr.weak_table(run), rr.informed_table(run)]


def _gradient_inversion_tables(run: dict) -> list[Table]:
    from privlab.studies.gradient_inversion import report as gr

    wrapped = {"gradient_inversion": run}
    return [gr.points_table(wrapped), gr.matched_table(wrapped)]


def _has_inversion(view: dict) -> bool:
    """Whether a targets study's view ran model inversion."""
    return bool(((view.get("config") or {}).get("targets") or {}).get("inversion"))


def run_tables(report: dict) -> list[Table]:
    """A report's reconstruction and gradient-inversion tables, each over its seeds, and its
    model-inversion table (already over the seeds)."""
    studies = report["studies"]
    per_seed = [
        _reconstruction_tables(run) for run in runs_of(studies.get("reconstruction") or {})
    ] + [
        _gradient_inversion_tables(run) for run in runs_of(studies.get("gradient_inversion") or {})
    ]
    tables = _over_seeds(per_seed) if per_seed else []
    if "targets" in studies:
        view = flat_view(report, studies["targets"])
        if _has_inversion(view):
            tables.append(inversion_table(view))
    return tables


def _keyed(rows: list[list[str]], keys: int) -> dict[tuple[str, ...], list[str]]:
    """Rows by their first ``keys`` cells and, where those repeat, their occurrence."""
    seen: dict[tuple[str, ...], int] = {}
    out = {}
    for r in rows:
        head = tuple(r[:keys])
        seen[head] = seen.get(head, -1) + 1
        out[(*head, str(seen[head]))] = r
    return out


def beside(small: Table, full: Table, keys: int = 2) -> Table:
    """Two tables of one kind as one: each cell "small · full", rows matched on their first
    ``keys`` cells, the k-th repeat with the k-th (in the full table's order, then the small
    table's rows it lacks); columns empty in both left out."""
    if small[0] != full[0]:
        raise ValueError(f"the tables' columns differ: {small[0]} vs {full[0]}")
    by_small, by_full = _keyed(small[1], keys), _keyed(full[1], keys)
    missing = ["—"] * len(full[0])
    rows = []
    for key in [*by_full, *(k for k in by_small if k not in by_full)]:
        pair = zip(by_small.get(key, missing), by_full.get(key, missing), strict=True)
        cells = [a if a == b == "—" else f"{a} · {b}" for a, b in pair]
        rows.append([*key[:keys], *cells[keys:]])
    shown = [i for i in range(len(full[0])) if i < keys or any(r[i] != "—" for r in rows)]
    return [full[0][i] for i in shown], [[r[i] for i in shown] for r in rows]


def reconstruction_summary(name: str, runs: list[dict]) -> None:
    """Weak-adversary and informed-adversary tables (mean ± std over the seeds), τ, the ε
    criterion and the Theorem 1 check per seed, and the figures of the last seed."""
    from privlab.studies.reconstruction import report as rr

    _print_tables([_reconstruction_tables(run) for run in runs])
    for seed, run in enumerate(runs):
        tag = f" (seed {run.get('seed', seed)})" if len(runs) > 1 else ""
        weak = run.get("weak_adversary") or {}
        if weak.get("tau") is not None:
            print(f"- τ = {weak['tau']:.4f} (from: {weak.get('tau_from')}){tag}")
        for line in [*rr.defended_lines(run), *rr.theorem1_lines(run)]:
            print(f"- {line}{tag}")
    report = runs[-1]
    FIGURES.mkdir(parents=True, exist_ok=True)
    figures = {
        "roc": (rr.weak_roc_figure, rr.weak_variants(report)),
        "tradeoff": (rr.tradeoff_figure, any(v.get("privacy") for v in rr.weak_variants(report))),
        "bound": (rr.bound_figure, (report.get("informed_adversary") or {}).get("dp")),
    }
    for kind, (fn, wanted) in figures.items():
        if wanted:
            figure = FIGURES / f"{name}_{kind}.png"
            figure.write_bytes(base64.b64decode(fn(report)))
            print(f"\n![{kind}]({figure.relative_to('docs')})")
    variants = rr.weak_variants(report)
    if variants and variants[0].get("examples"):
        figure = FIGURES / f"{name}_examples.png"
        figure.write_bytes(base64.b64decode(rr.examples_figure(variants[0]["examples"])))
        print(f"\n![reconstructions]({figure.relative_to('docs')})")
    print()


def gradient_inversion_summary(name: str, runs: list[dict]) -> None:
    """Per-point table and the matched comparison (mean ± std over the seeds), the summary
    lines per seed, and the Fig. 2 / 3 / 4 figures of the last seed."""
    from privlab.studies.gradient_inversion import report as gr

    reports = [{"gradient_inversion": run} for run in runs]
    _print_tables([_gradient_inversion_tables(run) for run in runs])
    for seed, r in enumerate(reports):
        tag = f" (seed {runs[seed].get('seed', seed)})" if len(runs) > 1 else ""
        for line in gr.summary_lines(r):
            print(f"- {line}{tag}")
    report = reports[-1]
    sec = gr.section_of(report)
    FIGURES.mkdir(parents=True, exist_ok=True)
    figures = {"tradeoff": gr.tradeoff_figure, "attacks": gr.attacks_figure}
    if any(p.get("utility") for s in sec["settings"] for p in s["points"]):
        figures.pop("attacks")
    else:
        figures.pop("tradeoff")
    for kind, fn in figures.items():
        figure = FIGURES / f"{name}_{kind}.png"
        figure.write_bytes(base64.b64decode(fn(sec)))
        print(f"\n![{kind}]({figure.relative_to('docs')})")
    figure = FIGURES / f"{name}_grid.png"
    figure.write_bytes(base64.b64decode(gr.grid_figure(sec["settings"][0])))
    print(f"\n![reconstructions]({figure.relative_to('docs')})\n")


def targets_summary(name: str, view: dict) -> None:
    """Membership tables, or the inversion table and trade-off figure."""
    if _has_inversion(view):
        print(inversion_markdown(view))
        print(correlation_lines(view))
        FIGURES.mkdir(parents=True, exist_ok=True)
        figure = FIGURES / f"{name}_tradeoff.png"
        figure.write_bytes(base64.b64decode(tradeoff_figure(view)))
        print(f"![privacy–robustness trade-off]({figure.relative_to('docs')})\n")
        return
    print(markdown_summary(view))
    print(advantage_table(view) + "\n")


def main(root: Path = Path("results/paper")) -> None:
    for path in sorted(root.glob("*/report.json")):
        report = load_report(path)  # schema-1 reports are upgraded
        name = path.parent.name
        print(f"## {name}\n")
        studies = report["studies"]
        if runs := runs_of(studies.get("reconstruction") or {}):
            reconstruction_summary(name, runs)
        if runs := runs_of(studies.get("gradient_inversion") or {}):
            gradient_inversion_summary(name, runs)
        if "targets" in studies:
            targets_summary(name, flat_view(report, studies["targets"]))


def print_beside(small: str, full: str, keys: int = 2, root: Path = Path("results/paper")) -> None:
    tables = [run_tables(load_report(root / name / "report.json")) for name in (small, full)]
    print(f"Each cell: `{small}` · `{full}`.\n")
    for s_table, f_table in zip(*tables, strict=False):
        print(markdown_table(*beside(s_table, f_table, keys)) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--beside"]:
        print_beside(*sys.argv[2:4], *(int(k) for k in sys.argv[4:5]))
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/paper"))
