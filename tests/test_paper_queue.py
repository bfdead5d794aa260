"""benchmarks/run_paper_configs.sh: two queues on one queue file run every config once (a lock
per running config), skip the finished ones, and log each run's wall time with the configs
that ran beside it. The script runs in a scratch copy of the repository's layout, with a
stand-in for ``privlab run`` that takes a second and writes the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "run_paper_configs.sh"
FAKE_PRIVLAB = """#!/usr/bin/env bash
# privlab run CONFIG --out DIR: record who ran it, take a second, write the report
echo "$QUEUE_NAME" >> "$4.ran"
sleep 1
mkdir -p "$4" && echo '{}' > "$4/report.json"
"""

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")


def _layout(root: Path, names: list[str]) -> Path:
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "configs" / "paper").mkdir(parents=True)
    (root / "results" / "paper").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "benchmarks" / SCRIPT.name)
    fake = root / "fake_privlab"
    fake.write_text(FAKE_PRIVLAB)
    fake.chmod(0o755)
    for name in names:
        (root / "configs" / "paper" / f"{name}.yaml").write_text("name: x\n")
    queue = root / "queue.txt"
    queue.write_text("# a comment\n" + "\n".join(names) + "\n")
    return queue


def _queue(root: Path, queue: Path, label: str) -> subprocess.Popen:
    env = os.environ | {"PRIVLAB": str(root / "fake_privlab"), "QUEUE_NAME": label}
    return subprocess.Popen(
        ["bash", str(root / "benchmarks" / SCRIPT.name), "--queue", str(queue)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_queues_share_one_file_and_run_each_config_once(tmp_path):
    names = ["a", "b", "c", "d"]
    queue = _layout(tmp_path, names)
    (tmp_path / "results" / "paper" / "d").mkdir()
    (tmp_path / "results" / "paper" / "d" / "report.json").write_text("{}")  # d is done
    os.utime(tmp_path / "configs" / "paper" / "d.yaml", (0, 0))  # its config is older
    first = _queue(tmp_path, queue, "first")
    second = _queue(tmp_path, queue, "second")
    outputs = [first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    ran = {n: (tmp_path / "results" / "paper" / f"{n}.ran") for n in names}
    assert not ran["d"].exists()  # finished before: skipped
    for name in "abc":
        assert len(ran[name].read_text().split()) == 1, f"{name} ran more than once"
    by = {n: ran[n].read_text().strip() for n in "abc"}
    assert set(by.values()) == {"first", "second"}  # both queues did work
    assert any("running in another queue" in out for out in outputs)
    log_file = tmp_path / "benchmarks" / "results" / "paper_runs.jsonl"
    log = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert sorted(entry["config"] for entry in log) == ["a", "b", "c"]
    assert all(entry["exit"] == 0 and entry["nproc"] >= 1 for entry in log)
    assert any(entry["beside"] for entry in log)  # the two ran at the same time
    assert all(entry["config"] not in entry["beside"] for entry in log)
