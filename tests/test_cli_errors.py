"""CLI failures a user can cause: one ``error:`` line on stderr, exit 2, no traceback; and the
CLI's --version, --debug, migrate-config, untruncated piped output and once-only warnings."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner, Result

import privlab
from privlab.cli import app, error_message
from privlab.cli_progress import RichProgressReporter
from privlab.config import load_config
from privlab.registry import ATTACKS, MODELS, REGISTRIES
from privlab.run.weights import ModelFileError

runner = CliRunner()

LONG_TARGET = "natural_target_with_a_long_descriptive_name_for_the_log"
LONG_LABELS = ("loss threshold attack with a long label", "confidence attack with a long label")


def _section(**overrides: object) -> dict:
    section: dict = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "params": {"hidden": [32]}},
        "train": {"epochs": 1},
        "targets": [{"name": "natural", "regime": "natural"}],
        "threat_model": {"reference": "none"},
        "attacks": [{"name": "loss_threshold"}],
    }
    return section | overrides


def _config(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "seed": 0, "targets": _section(**overrides)}))
    return path


def _user_error(result: Result) -> str:
    """The one ``error:`` line of a failed command (exit 2, no traceback anywhere)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return lines[0]


def _cli(*args: str, stdout: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, stdout redirected to a file (not a terminal)."""
    code = "import sys; from privlab.cli import app; sys.exit(app())"
    with stdout.open("w") as fh:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=os.environ | {"COLUMNS": "40"},  # a narrow terminal must not matter in a pipe
            timeout=300,
        )


def test_report_on_a_foreign_json(tmp_path: Path) -> None:
    foreign = tmp_path / "package.json"
    foreign.write_text(json.dumps({"name": "left-pad", "version": "1.3.0"}))
    line = _user_error(runner.invoke(app, ["report", str(foreign)]))
    assert "not a privlab report" in line and "package.json" in line


def test_out_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "taken")])
    line = _user_error(result)
    assert "output folder" in line and "is a file" in line


def test_privlab_cache_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    line = _user_error(result)
    assert "PRIVLAB_CACHE" in line and "is a file" in line


def test_malformed_yaml_is_one_line_wherever_it_comes_from(tmp_path: Path) -> None:
    """A config, a --set value and an audit's --train recipe: the line and column of the
    problem in one line, not PyYAML's drawing over several (nor a traceback)."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nseeds: [1,\n")
    config = str(_config(tmp_path))
    commands = {
        "config": ["run", str(broken)],
        "--set": ["run", config, "--set", "seeds=[1,", "--out", str(tmp_path / "o")],
        "recipe": ["audit", "--model", "m.py:f", "--members", "a.npz", "--nonmembers", "b.npz",
                   "--train", str(broken)],
    }  # fmt: skip
    for source, args in commands.items():
        result = runner.invoke(app, args)
        line = _user_error(result)
        assert result.stderr.strip() == line, (source, result.stderr)
        assert "not valid YAML, line" in line and "column" in line, (source, line)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["run", "audit", "shadow-heads"])
def test_a_negative_seed_is_refused_before_anything_runs(tmp_path: Path, command: str) -> None:
    args = {
        "run": [str(_config(tmp_path))],
        "audit": ["--model", "m.py:f", "--members", "a.npz", "--nonmembers", "b.npz"],
        "shadow-heads": [],
    }[command]
    result = runner.invoke(app, [command, *args, "--seed", "-1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--seed" in result.output and "greater than or equal to 0" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has mps")
@pytest.mark.parametrize("command", ["run", "demo"])
def test_device_that_is_not_available(tmp_path: Path, command: str) -> None:
    args = [str(_config(tmp_path))] if command == "run" else []
    result = runner.invoke(app, [command, *args, "--out", str(tmp_path / "o"), "--device", "mps"])
    line = _user_error(result)
    assert "device 'mps' is not available" in line
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_params_typo_lists_the_valid_params(tmp_path: Path) -> None:
    with pytest.raises(TypeError) as info:
        MODELS.build("mlp", input_shape=(64,), num_classes=10, hiden=[3])
    assert "'hiden' (did you mean 'hidden'?)" in str(info.value)
    assert "valid parameters: input_shape, num_classes, hidden" in str(info.value)
    with pytest.raises(TypeError, match=r"valid parameters: .*iterations"):
        ATTACKS.build("inverting_gradients", iteratons=3, tvv=0.1)
    # in a run: the targets' model is built when the run starts
    cfg = _config(tmp_path, model={"name": "mlp", "params": {"hiden": [32]}})
    line = _user_error(runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")]))
    assert "'hiden'" in line and "valid parameters:" in line and "hidden" in line


def test_params_typo_in_config_validation(tmp_path: Path) -> None:
    """gradient_inversion's section builds its attacks while the config is validated."""
    gi = {
        "data": "digits",
        "model": {"name": "mlp", "params": {"hidden": [16]}},
        "clients": [{"batch_size": 4}],
        "attacks": [{"name": "inverting_gradients", "params": {"iteratons": 3}}],
    }
    path = tmp_path / "gi.yaml"
    path.write_text(yaml.safe_dump({"name": "gi", "gradient_inversion": gi}))
    with pytest.raises(ValueError, match=r"attacks\.0: .*unknown parameter 'iteratons'"):
        load_config(path)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    _user_error(result)  # the config's errors follow it, one indented line each
    assert "'iteratons' (did you mean 'iterations'?)" in result.stderr
    assert "valid parameters: iterations, restarts" in result.stderr


def test_diverging_loss(tmp_path: Path) -> None:
    cfg = _config(tmp_path, train={"epochs": 1, "optimizer": "sgd", "lr": 1e30})
    line = _user_error(runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")]))
    assert line.startswith("error: training diverged") and "lower the learning rate" in line
    # NaN weights that reach the model store (the last step's loss was still finite)
    stored = ModelFileError("m.safetensors: non-finite (NaN/inf) values in net.0.weight")
    assert error_message(stored).startswith("training diverged: m.safetensors")


def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src, None, dst)

    monkeypatch.setattr(os, "replace", full)  # the rename of every atomic write
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    line = _user_error(result)
    assert line.startswith("error: disk full while writing ") and "resume" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    done = _cli("--debug", "report", str(foreign), stdout=tmp_path / "out.txt", cwd=tmp_path)
    assert done.returncode not in (0, 2)
    assert "Traceback" in done.stderr and "ReportError" in done.stderr
    assert not any(line.startswith("error:") for line in done.stderr.splitlines())


def test_ctrl_c_keeps_the_resume_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr("privlab.run.runner.run_experiment", interrupted)
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"privlab {privlab.__version__}\n"


LEGACY = """\
name: old  # the header stays
# the data of the study
data: {name: digits}
model: {name: mlp, params: {hidden: [32]}}
train: {epochs: 1}
targets:
  - {name: natural, regime: natural}
threat_model: {reference: none}
attacks: [{name: loss_threshold}]
"""


def test_migrate_config(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(LEGACY)
    result = runner.invoke(app, ["migrate-config", str(path)])
    assert result.exit_code == 0, result.output
    migrated = yaml.safe_load(result.stdout)
    assert set(migrated) == {"name", "targets"} and migrated["targets"]["data"]["name"] == "digits"
    assert "# the data of the study" in result.stdout and "# the header stays" in result.stdout
    assert path.read_text() == LEGACY  # printed only

    result = runner.invoke(app, ["migrate-config", str(path), "--write"])
    assert result.exit_code == 0, result.output
    assert path.read_text() != LEGACY and load_config(path).name == "old"
    assert not [p for p in tmp_path.iterdir() if p.name != "old.yaml"]  # no temporary left

    result = runner.invoke(app, ["migrate-config", str(path)])
    assert result.exit_code == 0 and "already current" in result.stderr and result.stdout == ""

    path.write_text("kind: membership\nname: x\n")
    line = _user_error(runner.invoke(app, ["migrate-config", str(path)]))
    assert "cannot migrate" in line


def test_piped_output_is_not_truncated(tmp_path: Path) -> None:
    attacks = [
        {"name": "loss_threshold", "label": LONG_LABELS[0]},
        {"name": "confidence", "label": LONG_LABELS[1]},
    ]
    targets = [{"name": LONG_TARGET, "regime": "natural"}]
    cfg = _config(tmp_path, targets=targets, attacks=attacks)
    out = tmp_path / "run.txt"
    done = _cli("run", str(cfg), "--out", str(tmp_path / "run"), stdout=out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for name in (LONG_TARGET, *LONG_LABELS):
        assert name in text
    assert "…" not in text + done.stderr
    assert LONG_TARGET in done.stderr  # the progress lines, whole
    assert max(len(line) for line in done.stderr.splitlines()) < 300  # none padded to 10,000

    compared = tmp_path / "compare.txt"
    run = str(tmp_path / "run")
    done = _cli("report", run, run, stdout=compared, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "comparison" in compared.read_text() and LONG_TARGET in compared.read_text()
    assert "…" not in compared.read_text()

    listed = tmp_path / "list.txt"
    assert _cli("list", stdout=listed, cwd=tmp_path).returncode == 0
    listing = listed.read_text()
    for registry in REGISTRIES:  # every description on one line, whole (some contain a '…')
        assert all(registry.describe(name) in listing for name in registry.names())


def test_log_lines_are_not_padded_to_the_console_width() -> None:
    buffer = io.StringIO()
    wide = Console(file=buffer, width=10_000, soft_wrap=True)  # output_console() in a pipe
    with RichProgressReporter(wide) as progress:
        progress.log(f"{LONG_TARGET}: loaded from cache")
    (line,) = buffer.getvalue().splitlines()
    assert line.endswith(f"] {LONG_TARGET}: loaded from cache")  # "[12:00:00] ..."


@pytest.mark.parametrize("terminal", [False, True])
def test_a_piped_log_shows_long_tasks_moving(terminal: bool) -> None:
    """No terminal: rich draws the bars only at the end, so a task writes a plain line when
    it advances at least ``every`` seconds after its last one; a terminal gets none."""
    now = [0.0]
    buffer = io.StringIO()
    console = Console(file=buffer, width=10_000, force_terminal=terminal)
    with RichProgressReporter(console, every=60.0, clock=lambda: now[0]) as progress:
        handle = progress.task("training x/seed1", 30)
        for now[0] in (10.0, 70.0, 100.0, 140.0):  # due at 70 and at 140 (70 after 70)
            handle.advance()
    lines = [line for line in buffer.getvalue().splitlines() if "/30, " in line]
    steps = [line.split("] ", 1)[1] for line in lines]
    # the time left at the rate since the first advance (t = 10, 1 step): 28 steps at 1 per
    # 60 s at t = 70, then 26 steps at 3 per 130 s at t = 140
    expected = [
        "training x/seed1: 2/30, 0:01:10, ~0:28:00 left",
        "training x/seed1: 4/30, 0:02:20, ~0:18:47 left",
    ]
    assert steps == ([] if terminal else expected)
    assert all(line.startswith("[") for line in lines)


def test_a_resumed_task_estimates_its_time_left_from_its_own_pace() -> None:
    """A fit resumed at step 3,500 of 7,900 counts those steps at once; the time left comes
    from the 500 steps it then took 540 s for, not from 4,000 steps in 540 s."""
    now = [0.0]
    console = Console(file=io.StringIO(), width=10_000, force_terminal=False)
    with RichProgressReporter(console, every=60.0, clock=lambda: now[0]) as progress:
        handle = progress.task("N=10: reconstructor", 7900)
        handle.advance(3500)
        now[0] = 540.0
        handle.advance(500)
        assert handle.left(now[0]) == timedelta(seconds=round(3900 * 540 / 500))


def test_warnings_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    def two_models(*args: object, **kwargs: object) -> dict:
        for _ in range(2):  # one warning per model, as Opacus gives
            warnings.warn("Secure RNG turned off (fake)", UserWarning, stacklevel=1)
        warnings.warn("another warning", UserWarning, stacklevel=1)
        return {"schema_version": 2, "studies": {}}

    warnings.simplefilter("always")  # without the CLI's filter both would be shown
    two_models()
    assert len(recwarn) == 3
    recwarn.clear()

    monkeypatch.setattr("privlab.run.runner.run_experiment", two_models)
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    shown = [str(w.message) for w in recwarn]
    assert shown.count("Secure RNG turned off (fake)") == 1 and "another warning" in shown
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "o")])
    assert [str(w.message) for w in recwarn].count("Secure RNG turned off (fake)") == 2  # per run


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """``privlab list | head -1``: the reader closes the pipe while the command still writes
    (here the write fails at once, whatever the timing); no ``error:`` line, no traceback,
    exit 1 (click's convention)."""
    code = (
        "import sys; import privlab.cli as cli\n"
        "def gone(*a, **k): raise BrokenPipeError(32, 'Broken pipe')\n"
        "cli.out_console.print = gone\n"
        "sys.exit(cli.app())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "list"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""


def test_every_command_has_a_one_line_summary_in_the_main_help() -> None:
    """The command table of ``privlab --help`` shows each command's first paragraph without
    the docstring's line breaks (typer keeps them there)."""
    import typer.main

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert len(commands) >= 7
    for name, command in commands.items():
        summary = command.short_help
        assert summary and "\n" not in summary, name
        assert summary == " ".join(command.help.split("\n\n")[0].split()), name
