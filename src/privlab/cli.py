"""The ``privlab`` command line: run, demo, list, report."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from privlab.config import ConfigError, load_config
from privlab.data.bundle import DatasetError
from privlab.experiment.aggregate import UTILITY_COLUMNS
from privlab.experiment.store import ModelFileError, read_json
from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES, UnknownComponentError
from privlab.threat_model import AccessDenied

app = typer.Typer(
    help="privlab: measure how much a trained model exposes its training data.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
out_console = Console()

USER_ERRORS = (
    ConfigError,
    DatasetError,
    ModelFileError,
    UnknownComponentError,
    AccessDenied,
    FileNotFoundError,
    ValueError,
    TypeError,
)

OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<name>).")
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key: a.b=value.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 or auto (default: config).")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for splits, initialisation and attacks.")]


def _execute(
    config_path: Path, out: Path | None, overrides: list[str], device: str | None, seed: int | None
) -> None:
    from privlab.cli_progress import RichProgressReporter
    from privlab.experiment.runner import run_experiment

    if seed is not None:
        overrides = [*overrides, f"seed={seed}", "seeds=null"]
    try:
        config = load_config(config_path, overrides)
        out_dir = out or Path("runs") / config.name
        with RichProgressReporter(console) as progress:
            report = run_experiment(config, out_dir, device=device, progress=progress)
    except USER_ERRORS as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted: finished models and attacks are cached; run the "
            "same command again to resume[/]"
        )
        raise typer.Exit(130) from None
    _print_summary(report)
    console.print(f"report: [bold]{out_dir / 'report.html'}[/] (and report.json)")


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Formatted cells as a terminal table, the first column left-aligned."""
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    out_console.print(table)


def _print_reconstruction(report: dict[str, Any]) -> None:
    from privlab.experiment.reconstruction_report import informed_table, weak_table

    name = report["config"]["name"]
    for title, (header, rows) in (
        ("weak adversary (%)", weak_table(report)),
        ("informed adversary (%)", informed_table(report)),
    ):
        if rows:
            _print_table(f"{name}: {title}", header, rows)


def _print_gradient_inversion(report: dict[str, Any]) -> None:
    from privlab.experiment.gradient_inversion_report import (
        matched_table,
        points_table,
        summary_lines,
    )

    name = report["config"]["name"]
    header, rows = points_table(report)
    if rows:
        _print_table(f"{name}: gradient inversion (PSNR dB, RMSE, %)", header, rows)
    header, rows = matched_table(report)
    if rows and len(header) > 4:  # client, level, best defence and at least two defences
        _print_table(f"{name}: best RMSE at equal utility loss", header, rows)
    for line in summary_lines(report):
        out_console.print(line)


def _print_summary(report: dict[str, Any]) -> None:
    if report.get("kind") == "reconstruction":
        _print_reconstruction(report)
        return
    if report.get("kind") == "gradient_inversion":
        _print_gradient_inversion(report)
        return
    labels = list(dict.fromkeys(a["label"] for t in report["targets"] for a in t["attacks"]))
    title = "membership inference accuracy (worst-case / honest threshold, %)"
    table = Table(title=f"{report['config']['name']}: {title if labels else 'accuracy (%)'}")
    utilities = [t["utility"] for t in report["targets"]]
    # utility columns with at least one informative value: verified accuracy needs a budget,
    # and is left out when nothing was certified (models not trained to be verifiable)
    keys = [
        k
        for k in UTILITY_COLUMNS
        if any(u.get(k) is not None for u in utilities)
        and (not k.startswith("ver_") or any(u.get(k) for u in utilities))
    ]
    for col in ["target", *(UTILITY_COLUMNS[k] for k in keys), *labels]:
        table.add_column(col, justify="left" if col == "target" else "right")
    for t in report["targets"]:
        u = t["utility"]
        cells = {a["label"]: a["metrics"] for a in t["attacks"]}
        attack_cells = []
        for label in labels:
            m = cells.get(label)
            honest = (m or {}).get("honest") or {}
            attack_cells.append(
                "—" if m is None else f"{_pct(m['accuracy'])}/{_pct(honest.get('accuracy'))}"
            )
        table.add_row(t["name"], *(_pct(u.get(k)) for k in keys), *attack_cells)
    out_console.print(table)
    _print_inversion(report)
    _print_gradient_inversion(report)


def _print_inversion(report: dict[str, Any]) -> None:
    from privlab.experiment.inversion_report import inversion_table

    header, cells = inversion_table(report)
    if not cells:
        return
    # the terminal shows accuracy, robustness, Acc@1 and the KNN distance; report.html has all
    several = any(row[1] != "1" for row in cells)
    keep = [
        i
        for i, h in enumerate(header)
        if h in ("target", "test acc", "robust acc")
        or (h == "n" and several)
        or h.endswith(("Acc@1", "KNN dist"))
    ]
    _print_table(
        f"{report['config']['name']}: model inversion (%, KNN distance)",
        [header[i] for i in keep],
        [[row[i] for i in keep] for row in cells],
    )


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: OutOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Run an experiment: train its targets, attack them, write report.json and report.html."""
    _execute(config, out, set_ or [], device, seed)


@app.command()
def demo(
    out: OutOpt = None, set_: SetOpt = None, device: DeviceOpt = None, seed: SeedOpt = None
) -> None:
    """The main job: natural vs PGD-AT, TRADES and distributional AT on digits, attacked by
    loss, I_B, I_A and targeted model-infer (Song et al. 2019 in miniature), then inverted by
    PPA and MI-Face (the AT-AT study in miniature)."""
    with resources.as_file(resources.files("privlab") / "configs" / "demo.yaml") as path:
        _execute(path, out or Path("runs") / "demo", set_ or [], device, seed)


@app.command("shadow-heads")
def shadow_heads(
    out: Annotated[Path, typer.Option(help="Folder for the shards (resumed if it exists).")],
    heads: Annotated[int, typer.Option(help="Number of shadow heads.")] = 100_000,
    n: Annotated[int, typer.Option(help="Training-set size of every head (N).")] = 10,
    shard_size: Annotated[int, typer.Option(help="Heads per shard file.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the job (shard i: seed and i).")] = 0,
    backend: Annotated[
        str, typer.Option(help="local, or ray (a running cluster or a new local one).")
    ] = "local",
) -> None:
    """Train shadow heads on the transfer setting's features (Maciazek & Allison, Algorithm 1)
    and write them to disk in resumable shards."""
    from privlab.experiment.models import default_cache_dir
    from privlab.experiment.shadow_heads import ShadowJob, ShardError, generate_shadow_heads
    from privlab.experiment.transfer import transfer_setting
    from privlab.training.heads import HeadSpec

    try:
        data = transfer_setting(cache_dir=default_cache_dir())
        job = ShadowJob(
            spec=HeadSpec(),
            n=n,
            count=heads,
            shard_size=shard_size,
            seed=seed,
            pool_sha256=data.sha256(),
        )
        paths = generate_shadow_heads(job, data.features, data.labels, out, backend=backend)
    except (ShardError, ValueError, ImportError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from None
    out_console.print(f"{heads} heads in {len(paths)} shards under {out} (job {job.key()[:12]})")


@app.command("list")
def list_components() -> None:
    """Every registered dataset, model, regime and attack."""
    for registry in (DATASETS, MODELS, REGIMES, ATTACKS):
        table = Table(title=f"{registry.kind}s", show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name in registry.names():
            family = getattr(registry.get(name), "family", None)
            described = registry.describe(name)
            table.add_row(name, f"({family}) {described}" if family else described)
        out_console.print(table)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s) with report.json.")],
    html: Annotated[Path | None, typer.Option(help="Write the comparison here.")] = None,
    markdown: Annotated[bool, typer.Option(help="Print a mean ± std table.")] = False,
) -> None:
    """Re-render one run's report.html, or compare several runs as a table."""
    from privlab.experiment.aggregate import markdown_summary
    from privlab.experiment.html import comparison_table, render_comparison_html, write_html
    from privlab.experiment.store import atomic_write_bytes

    loaded = []
    for run_dir in runs:
        path = run_dir if run_dir.suffix == ".json" else run_dir / "report.json"
        try:
            loaded.append((str(run_dir), read_json(path)))
        except FileNotFoundError:
            console.print(f"[bold red]error:[/] {path} not found (is {run_dir} a run folder?)")
            raise typer.Exit(2) from None
        except ValueError as err:
            console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(2) from None
    if len(loaded) == 1 and run_dir.is_dir():
        write_html(loaded[0][1], run_dir / "report.html")
        console.print(f"re-rendered {run_dir / 'report.html'}")
    for label, rep in loaded:
        if markdown:
            typer.echo(f"## {label}\n\n{markdown_summary(rep)}")  # raw: no rich wrapping
        else:
            _print_summary(rep)
    if len(loaded) > 1:
        rows = comparison_table(loaded)
        table = Table(title="comparison")
        for col in rows[0] if rows else []:
            table.add_column(col)
        for row in rows:
            table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
        out_console.print(table)
    if html is not None:
        atomic_write_bytes(html, render_comparison_html(loaded).encode())
        console.print(f"wrote {html}")


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
