"""The ``privlab`` command line: run, demo, list, report."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from privlab.config import ConfigError, load_config
from privlab.data.bundle import DatasetError
from privlab.registry import REGISTRIES, UnknownComponentError
from privlab.report.console import output_console, print_report, print_table
from privlab.run.store import ModelFileError
from privlab.studies.base import TextTable
from privlab.threat_model import AccessDenied

app = typer.Typer(
    help="privlab: measure how much a trained model exposes its training data.",
    no_args_is_help=True,
    add_completion=False,
)
console = output_console(stderr=True)
out_console = output_console()

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
    from privlab.run.runner import run_experiment

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
    print_report(report, out_console)
    console.print(f"report: [bold]{out_dir / 'report.html'}[/] (and report.json)")


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
    from privlab.run.model_cache import default_cache_dir
    from privlab.studies.reconstruction.shadow_heads import (
        ShadowJob,
        ShardError,
        generate_shadow_heads,
    )
    from privlab.studies.reconstruction.transfer import transfer_setting
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
    """Every registered dataset, model, regime, attack, federated defence and study."""
    for registry in REGISTRIES:
        table = Table(title=Text(registry.plural), show_header=False, title_justify="left")
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("description", overflow="fold")
        for name in registry.names():
            family = getattr(registry.get(name), "family", None)
            described = registry.describe(name)
            text = f"({family}) {described}" if family else described
            table.add_row(Text(name), Text(text))  # literal: [brackets] are not markup
        out_console.print(table)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s) with report.json.")],
    html: Annotated[Path | None, typer.Option(help="Write the comparison here.")] = None,
    markdown: Annotated[bool, typer.Option(help="Print markdown; mean ± std over seeds.")] = False,
) -> None:
    """Re-render one run's report.html, or compare several runs (every study)."""
    from privlab.report.compare import (
        comparison_markdown,
        comparison_tables,
        markdown_report,
        render_comparison_html,
    )
    from privlab.report.html import write_html
    from privlab.report.schema import ReportError, load_report
    from privlab.run.store import atomic_write_bytes

    try:
        loaded = [(str(run_dir), load_report(run_dir)) for run_dir in runs]
    except ReportError as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}")
        raise typer.Exit(2) from None
    if len(loaded) == 1 and runs[0].is_dir():
        write_html(loaded[0][1], runs[0] / "report.html")
        console.print(f"re-rendered {runs[0] / 'report.html'}")
    if markdown:
        for label, rep in loaded:
            typer.echo(f"## {label}\n\n{markdown_report(rep)}")  # raw: no rich wrapping
        if len(loaded) > 1:
            typer.echo(comparison_markdown(loaded))
    else:
        for _, rep in loaded:
            print_report(rep, out_console)
        if len(loaded) > 1:
            for title, header, rows in comparison_tables(loaded):
                print_table(out_console, TextTable(f"comparison: {title}", header, rows))
    if html is not None:
        atomic_write_bytes(html, render_comparison_html(loaded).encode())
        console.print(f"wrote {html}")


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
