"""The examples of the README's "Audit your own model" run: examples/audit_api.py (a plain
PyTorch model audited through ``privlab.audit``), examples/audit_cli.sh (the same through
``privlab audit``), each in its quick mode, and examples/audit_tabular.py (an MLP on Adult), in
a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(cmd: list[str], tmp_path: Path) -> str:
    # privlab and python of this interpreter's environment first on PATH (for the shell
    # example when the repository has no .venv); models cached inside the test's folder
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRIVLAB_CACHE": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr  # privlab prints progress and "skipped" lines on stderr


def _check_report(folder: Path, output: str) -> None:
    assert (folder / "report.html").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["studies"]["targets"]["runs"][0]["targets"][0]["attacks"]
    assert "membership advantage" in output  # the audit summary
    assert "skipped lira" in output  # quick mode: no recipe, and the reason is printed


def test_the_api_example_trains_and_audits_a_plain_pytorch_model(tmp_path: Path) -> None:
    out = tmp_path / "api"
    cmd = [sys.executable, str(EXAMPLES / "audit_api.py"), "--quick", "--out", str(out)]
    output = _run(cmd, tmp_path)
    _check_report(out, output)
    assert "most exposed members" in output


@pytest.mark.skipif(shutil.which("bash") is None, reason="the CLI example is a bash script")
def test_the_cli_example_audits_the_saved_model(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    output = _run(["bash", str(EXAMPLES / "audit_cli.sh"), "--quick", str(out)], tmp_path)
    _check_report(out / "report", output)
    assert (out / "inputs" / "weights.safetensors").is_file()


def test_the_tabular_example_prints_the_most_exposed_people_as_named_rows(tmp_path: Path) -> None:
    out = tmp_path / "tabular"
    output = _run([sys.executable, str(EXAMPLES / "audit_tabular.py"), str(out)], tmp_path)
    _check_report(out, output)
    assert "leakage" in output  # the reading against the documented levels
    assert "most exposed members" in output
    assert "workclass " in output and "native-country " in output  # records as attributes
