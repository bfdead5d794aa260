"""Gradient-inversion sweep time: the utility-matched defence sweep of the claims config.

Requirement (gradient-inversion issue): "The utility-matched defence sweep of the claims config
in at most 30 minutes on 2 cores."

Runs ``configs/paper/liu2025_fig3_utility_matched.yaml`` from scratch (a fresh run folder and
model cache, so nothing is resumed) with 2 torch threads, as the requirement was set: one seed
and FedAvg utility runs of a fixed 100 rounds (the claims config itself now runs three seeds,
FedAvg to convergence and a learning-rate grid for DP clients: hours, issue 15): every defence
point's attacks (two attacks × two client batches) and FedAvg utility run, and the matched
comparison. Reports the
wall time, the per-unit split (attack vs utility seconds, from the report) and the verdict, and
writes ``benchmarks/results/gradient_inversion_sweep.json``. ``--keep DIR`` keeps the run folder
(its report.html is the Fig. 3 analogue).

Usage: .venv/bin/python benchmarks/bench_gradient_inversion_sweep.py [--config PATH]
       [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import Clock, load_note, machine_info, set_threads, write_result

from privlab.config import load_config_dict
from privlab.config.schema import ExperimentConfig, read_yaml
from privlab.report.schema import load_report
from privlab.run.runner import run_experiment
from privlab.studies.base import runs_of

NAME = "gradient_inversion_sweep"
REQUIREMENT = (
    "The utility-matched defence sweep of the claims config in at most 30 minutes on 2 cores"
)
LIMIT_S = 1800.0
DEFAULT_CONFIG = (
    Path(__file__).resolve().parent.parent / "configs/paper/liu2025_fig3_utility_matched.yaml"
)


def as_measured(path: Path) -> ExperimentConfig:
    """The config as the requirement measures it: seed 0, 100 fixed FedAvg rounds, no tuning."""
    data = read_yaml(path)
    data.pop("seeds", None)
    data["seed"] = 0
    utility = data["gradient_inversion"].get("utility")
    if utility:
        for key in ("until", "max_rounds", "patience", "tolerance", "lr_tuning"):
            utility.pop(key, None)
        utility["rounds"] = 100
    return load_config_dict(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="run folder to keep")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    before = machine_info()
    print(REQUIREMENT)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "run"
        if (out / "state").exists():
            raise SystemExit(f"{out} holds a finished run: pick an empty --keep folder")
        os.environ["PRIVLAB_CACHE"] = str(Path(tmp) / "cache")
        config = as_measured(args.config)
        with Clock() as clock:
            run_experiment(config, out)
        report = load_report(out)
    after = machine_info()
    runs = runs_of(report["studies"]["gradient_inversion"])  # one per seed of the config
    settings = [s for run in runs for s in run["settings"]]
    attack_names = list(dict.fromkeys(a for run in runs for a in run["attacks"]))
    attack_s = sum(
        a["seconds"] for s in settings for p in s["points"] for a in p["attacks"].values()
    )
    utility_s = sum(
        (p.get("utility") or {}).get("seconds", 0.0) for s in settings for p in s["points"]
    )
    points = sum(len(s["points"]) for s in settings)
    verdict = "PASS" if clock.wall <= LIMIT_S else "FAIL"
    note = load_note(before, after)
    print(
        f"{points} defence points × {len(attack_names)} attacks: {clock.wall:.0f} s wall "
        f"({attack_s:.0f} s attacks, {utility_s:.0f} s FedAvg utility runs)\n{note}\n"
        f"RESULT: {verdict} — {clock.wall:.0f} s (limit {LIMIT_S:.0f} s)"
    )
    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": verdict,
            "limit_s": LIMIT_S,
            "wall_s": clock.wall,
            "cpu_s": clock.cpu,
            "attack_s": attack_s,
            "utility_s": utility_s,
            "points": points,
            "seeds": [run["seed"] for run in runs],
            "settings": list(dict.fromkeys(s["client"]["label"] for s in settings)),
            "attacks": attack_names,
            "config": str(args.config),
            "threads": args.threads,
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
        },
    )
    print(f"wrote {path}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
