"""Wall time of the whole AT-AT defence grid on a cold model cache (requirement: ≤ 60 min on
2 cores for every regime × 3 seeds).

Runs ``privlab run configs/paper/atat2026_defence_grid.yaml`` (14 targets × 3 seeds: training,
utility, three inversion attacks, APGD-CE robust accuracy, nHSIC, masked-pixel check) in a
fresh temporary cache and output folder, so every model, prior and evaluator is trained, and
reports the wall time next to the run's own breakdown (train / attack / utility seconds).

Usage: .venv/bin/python benchmarks/bench_defence_grid.py [--config PATH] [--set key=value ...]
(``--set seeds=[0]`` for a one-seed smoke run; the study's keys are section paths, e.g.
``--set targets.train.epochs=2``). The target count is read from the report's ``targets`` study
(every seed's run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401  (thread settings for the child run)
from _common import load_note, machine_info, write_result

from privlab.report.schema import load_report
from privlab.studies.base import runs_of

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 60 * 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/paper/atat2026_defence_grid.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    before = machine_info()
    with tempfile.TemporaryDirectory(prefix="privlab-grid-") as tmp:
        env = os.environ | {"PRIVLAB_CACHE": str(Path(tmp) / "cache")}
        privlab = str(Path(sys.executable).parent / "privlab")
        cmd = [privlab, "run", args.config, "--out", f"{tmp}/out"]
        cmd += [x for pair in args.overrides for x in ("--set", pair)]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        report = load_report(Path(tmp) / "out")
    after = machine_info()
    runs = runs_of(report["studies"].get("targets") or {})
    targets = sum(len(run.get("targets") or []) for run in runs)
    payload = {
        "config": str(Path(args.config).relative_to(ROOT)),
        "overrides": args.overrides,
        "targets_x_seeds": targets,
        "wall_seconds": wall,
        "timings": report["timings"],
        "limit_seconds": LIMIT_S,
        "verdict": "PASS" if wall <= LIMIT_S else "FAIL",
        "machine": before,
        "load": load_note(before, after),
    }
    path = write_result("defence_grid", payload)
    print(
        f"{targets} trained targets in {wall / 60:.1f} min (limit 60): {payload['verdict']}; "
        f"{payload['load']}; {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
