"""The ``privlab`` command line: run, demo, list, report, shadow-heads, migrate-config.

A failure the user can cause (a bad config, a full disk, a missing device, a diverging loss,
a file that is not a report) is one ``error: ...`` line on stderr and exit status 2; the
exception types that count are :data:`USER_ERRORS`, handled in one place
(:class:`_ErrorHandlingGroup`). ``privlab --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import inspect
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from privlab import __version__
from privlab.config import ConfigError, load_config
from privlab.data.bundle import DatasetError
from privlab.registry import REGISTRIES, UnknownComponentError
from privlab.report.console import output_console, print_report, print_table
from privlab.run.backend import BackendError
from privlab.run.weights import ModelFileError
from privlab.studies.base import TextTable
from privlab.threat_model import AccessDenied

console = output_console(stderr=True)
out_console = output_console()

#: exceptions a user can cause: one ``error:`` line and exit 2 (``--debug``: the traceback).
#: ValueError covers ConfigError, DatasetError, ModelFileError, ReportError and ShardError;
#: OSError covers a full disk, a file where a folder should be and AccessDenied.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DatasetError,
    ModelFileError,
    UnknownComponentError,
    AccessDenied,
    ValueError,
    TypeError,
    FloatingPointError,  # a diverging loss (training/loop.py)
    OSError,
    ImportError,  # an optional extra that is not installed (ray)
    BackendError,  # a Ray cluster that cannot be reached, a worker that keeps dying
)

#: commands whose finished work is cached, so that running them again resumes
RESUMABLE = ("run", "demo", "shadow-heads")


def error_message(err: BaseException) -> str:
    """The one line printed for a user error."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = err.filename2 or err.filename or "the run folder or the model cache"
        return (
            f"disk full while writing {where}: free some space (or point --out / "
            "PRIVLAB_CACHE at another disk) and run the same command again to resume"
        )
    if isinstance(err, FloatingPointError):
        return f"training diverged: {err}"
    if isinstance(err, ModelFileError) and "non-finite" in str(err):
        return f"training diverged: {err}; lower the learning rate"
    if isinstance(err, OSError) and err.strerror and type(err).__str__ is OSError.__str__:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def _is_bug(err: BaseException) -> bool:
    """An import error inside privlab itself is a bug (shown with its traceback), not an
    optional extra that is missing."""
    return isinstance(err, ImportError) and (err.name or "").split(".")[0] == "privlab"


class _ErrorHandlingGroup(TyperGroup):
    """Runs every command under the one handler of user errors and Ctrl-C."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # the reader went away (``privlab ... | head``): stop quietly, as click does, and
            # point stdout at nothing so that the interpreter's last flush cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            resume = ctx.invoked_subcommand in RESUMABLE
            console.print(
                "interrupted: finished models and attacks are cached; run the same command "
                "again to resume"
                if resume
                else "interrupted",
                style="yellow",
                markup=False,
            )
            raise typer.Exit(130) from None
        except USER_ERRORS as err:
            if ctx.params.get("debug") or _is_bug(err):
                raise
            console.print(Text.assemble(("error:", "bold red"), " ", error_message(err)))
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_ErrorHandlingGroup,
    help="privlab: measure how much a trained model exposes its training data.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"privlab {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """--debug is read by _ErrorHandlingGroup from the context's params."""


OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<name>).")
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key: a.b=value.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 or auto (default: config).")]
SeedOpt = Annotated[
    int | None, typer.Option(help="Seed for splits, initialisation and attacks.", min=0)
]
BackendOpt = Annotated[
    str | None,
    typer.Option(help="local, or ray: the studies' units as Ray tasks (default: config)."),
]
AddressOpt = Annotated[
    str | None, typer.Option(help="A Ray cluster's address (auto: the running one); with ray.")
]
AccessOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="labels, probs, logits, loss, input_gradients, weights, param_gradients; "
        "black-box or white-box (default black-box)."
    ),
]
DefenceOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="A federated defence the gradient-inversion audit compares (repeatable): NAME "
        "or NAME:PARAM=VALUE,… (PARAM=[V1,V2] sweeps), e.g. pruning:p=[0.5,0.9]."
    ),
]


def _execute(
    config_path: Path, out: Path | None, overrides: list[str], device: str | None, seed: int | None
) -> None:
    if seed is not None:
        overrides = [*overrides, f"seed={seed}", "seeds=null"]
    _run_config(load_config(config_path, overrides), out, device)


def _run_config(config: Any, out: Path | None, device: str | None) -> None:
    """Run a validated config with progress bars; print its tables and where the report is."""
    from privlab.cli_progress import RichProgressReporter, warnings_once
    from privlab.run.runner import run_experiment

    out_dir = out or Path("runs") / config.name
    with warnings_once(), RichProgressReporter(console) as progress:
        report = run_experiment(config, out_dir, device=device, progress=progress)
    print_report(report, out_console)
    console.print(
        Text.assemble("report: ", (str(out_dir / "report.html"), "bold"), " (and report.json)")
    )


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: OutOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    backend: BackendOpt = None,
    address: AddressOpt = None,
) -> None:
    """Run an experiment: train its targets, attack them, write report.json and report.html."""
    where = [f"{k}={v}" for k, v in (("backend", backend), ("address", address)) if v]
    _execute(config, out, [*(set_ or []), *where], device, seed)


@app.command()
def demo(
    out: OutOpt = None, set_: SetOpt = None, device: DeviceOpt = None, seed: SeedOpt = None
) -> None:
    """The main job: natural vs PGD-AT, TRADES and distributional AT on digits, attacked by
    loss, I_B, I_A and targeted model-infer (Song et al. 2019 in miniature), then inverted by
    PPA and MI-Face (the AT-AT study in miniature)."""
    with resources.as_file(resources.files("privlab") / "configs" / "demo.yaml") as path:
        _execute(path, out or Path("runs") / "demo", set_ or [], device, seed)


def _audit_scores(
    scores: Path, kind: str, label_column: str | None, seed: int, out: Path | None, device: Any
) -> None:
    """``privlab audit --scores``: the scores study on a file of precomputed scores."""
    from privlab.config import load_config_dict

    section = {"file": str(scores), "kind": kind, "label_column": label_column}
    data = {"name": "audit", "seed": seed, "scores": section}
    _run_config(load_config_dict(data), out or Path("runs") / "audit", device)


@app.command()
def audit(
    model: Annotated[
        str | None, typer.Option(help="FILE.py:NAME (returns an nn.Module) or FILE.pt2.")
    ] = None,
    members: Annotated[
        str | None, typer.Option(help="The model's training data (.npz, .pt, folder, .csv).")
    ] = None,
    nonmembers: Annotated[
        str | None, typer.Option(help="Data the model was not trained on.")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="safetensors, or a state dict (weights_only=True).")
    ] = None,
    population: Annotated[
        str | None, typer.Option(help="The attacker's own data (for shadow / reference models).")
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="The label column of CSV data.")] = None,
    access: AccessOpt = None,
    attacks: Annotated[
        list[str] | None, typer.Option(help="Attacks (default: all the access and data allow).")
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="How the model was trained (recipe YAML), for LiRA etc.")
    ] = None,
    defence: DefenceOpt = None,
    scores: Annotated[
        Path | None,
        typer.Option(help="Precomputed per-example scores (.npz or .csv) instead of a model."),
    ] = None,
    scores_kind: Annotated[str, typer.Option(help="score, loss, logits or probs.")] = "score",
    out: OutOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacks and reference models.", min=0)] = 0,
    device: DeviceOpt = None,
    backend: BackendOpt = None,
    address: AddressOpt = None,
) -> None:
    """Audit a model privlab did not train: its membership leakage on the given data (or,
    with --scores, on scores computed outside privlab)."""
    from privlab.auditing import plan as p
    from privlab.config import load_config_dict

    p.check_audit_options(scores is not None, model=model, members=members, nonmembers=nonmembers)
    if scores is not None:
        return _audit_scores(scores, scores_kind, label_column, seed, out, device)
    assert model is not None and members is not None and nonmembers is not None
    plan = p.AuditPlan(
        model=model, members=members, nonmembers=nonmembers, weights=weights,
        population=population, label_column=label_column,
        access=list(access or ["black-box"]), attacks=list(attacks) if attacks else None,
        recipe=p.read_recipe(train) if train else None, seed=seed,
        defences=["none", *(p.parse_defence(d) for d in defence or [])],
    )  # fmt: skip
    data, skipped = p.audit_config(plan)
    for line in skipped:
        console.print(Text(f"skipped {line}"))
    data = p.on_backend(data, backend, address, trainer=None)
    _run_config(load_config_dict(data), out or Path("runs") / "audit", device)


@app.command("shadow-heads")
def shadow_heads(
    out: Annotated[Path, typer.Option(help="Folder for the shards (resumed if it exists).")],
    heads: Annotated[int, typer.Option(help="Number of shadow heads.")] = 100_000,
    n: Annotated[int, typer.Option(help="Training-set size of every head (N).")] = 10,
    shard_size: Annotated[int, typer.Option(help="Heads per shard file.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the job (shard i: seed and i).", min=0)] = 0,
    backend: Annotated[
        str, typer.Option(help="local, or ray (a running cluster or a new local one).")
    ] = "local",
    address: AddressOpt = None,
) -> None:
    """Train shadow heads on the transfer setting's features (Maciazek & Allison, Algorithm 1)
    and write them to disk in resumable shards."""
    from privlab.cli_progress import warnings_once
    from privlab.run.backend import make_backend
    from privlab.run.model_cache import default_cache_dir
    from privlab.studies.reconstruction.shadow_heads import ShadowJob, generate_shadow_heads
    from privlab.studies.reconstruction.transfer import transfer_setting
    from privlab.training.heads import HeadSpec

    runner = make_backend(backend, address)  # a bad backend or address: before any work
    data = transfer_setting(cache_dir=default_cache_dir())
    job = ShadowJob(
        spec=HeadSpec(),
        n=n,
        count=heads,
        shard_size=shard_size,
        seed=seed,
        pool_sha256=data.sha256(),
    )
    with warnings_once():
        paths = generate_shadow_heads(job, data.features, data.labels, out, backend=runner)
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
    from privlab.report.schema import load_report
    from privlab.run.files import atomic_write_bytes

    loaded = [(str(run_dir), load_report(run_dir)) for run_dir in runs]  # ReportError: exit 2
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


@app.command("migrate-config")
def migrate_config(
    config: Annotated[Path, typer.Argument(help="A config written before the studies redesign.")],
    write: Annotated[
        bool, typer.Option("--write", help="Rewrite the file in place (atomically).")
    ] = False,
) -> None:
    """Rewrite an old config (``kind:`` configs, top-level targets keys) in the current form,
    comments kept: printed, or written back with --write."""
    from privlab.config.migrate import legacy_problem, migrate_dict, migrate_text
    from privlab.config.schema import read_yaml

    data = read_yaml(config)
    problem = legacy_problem(data)
    if problem is None:
        console.print(f"{config} is already current: nothing to migrate", markup=False)
        return
    if data.get("kind") not in (None, "reconstruction", "gradient_inversion"):
        raise ConfigError(f"{config}: {problem}; cannot migrate it")
    text = migrate_text(config.read_text(), data)
    if yaml.safe_load(text) != migrate_dict(data):  # the text rewrite must mean the same data
        raise ConfigError(
            f"{config}: cannot rewrite this file's layout automatically; move the keys by "
            f"hand ({problem})"
        )
    if not write:
        typer.echo(text, nl=False)  # raw: no rich wrapping or markup
        return
    _replace_text(config, text)
    console.print(f"rewrote {config}", markup=False)


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` atomically (through a symlink), keeping its permissions."""
    from privlab.run.files import atomic_write_bytes

    target = path.resolve()
    mode = target.stat().st_mode & 0o7777
    atomic_write_bytes(target, text.encode())
    os.chmod(target, mode)


def _one_line_summaries() -> None:
    """Each command's summary in ``privlab --help``: its docstring's first paragraph on one
    line (typer's command table keeps the docstring's line breaks, its own help page does not)."""
    for info in app.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            first = inspect.cleandoc(info.callback.__doc__).split("\n\n")[0]
            info.short_help = " ".join(first.split())


_one_line_summaries()


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
