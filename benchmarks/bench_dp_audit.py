"""The one-run DP audit of a DP-SGD CNN on ``mnist5k`` with 1,000 canaries, end to end.

Requirement (DP-auditing issue): "the one-run audit of a DP-SGD CNN on ``mnist5k`` with
1,000 canaries, end to end, at most 10 minutes on 2 cores".

End to end means from nothing to the audited bound, as a user gets it: a fresh, empty model
cache and one ``privlab run`` process (interpreter start and imports included) that loads
``mnist5k`` (seed 0: 2,000 members, 2,000 non-members, 1,000 population), trains the DP-SGD
target (``cnn_small`` channels (16, 32), fc 100; σ = 1, C = 1, δ = 1e-5, 10 epochs, batch
64, SGD lr 0.5), measures its utility, runs the loss attack (and its ε lower bound), draws
the 1,000 population images as mislabelled canaries, trains the canary run (the target's
recipe on its members plus the canaries whose coin came up "in") and bounds ε from the
guesses on them (one run; 100 "in" and 100 "out" guesses), audits the DP-SGD step
white-box with 1,000 gradient-canary runs at the target's σ, C, q, steps and δ, and writes
report.json and report.html. The subprocess gets 2 torch threads.

Reported: the wall time (the number compared with the 10-minute bound), the accountant's ε,
the one-run and gradient-canary lower bounds, the guesses and how many were right.

Usage: .venv/bin/python benchmarks/bench_dp_audit.py [--epochs E] [--canaries M]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import load_note, machine_info, markdown_table, write_result
from bench_lira_mnist5k import run_cli, the_target

NAME = "dp_audit"
REQUIREMENT = "one-run audit of a DP-SGD mnist5k CNN with 1,000 canaries end to end in ≤ 10 min"
LIMIT_S = 600.0


def make_config(cache: Path, epochs: int, canaries: int) -> dict[str, Any]:
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}
    return {
        "name": "bench-dp-audit",
        "seed": 0,
        "cache_dir": str(cache),
        "targets": {
            "data": {"name": "mnist5k"},
            "model": {"name": "cnn_small", "params": {"channels": [16, 32], "fc": 100}},
            "train": {
                "epochs": epochs,
                "batch_size": 64,
                "optimizer": "sgd",
                "lr": 0.5,
                "momentum": 0.0,
            },
            "threat_model": {"reference": "none"},
            "targets": [{"name": "dp_sgd", "regime": {"name": "dp_sgd", "params": dp}}],
            "attacks": [{"name": "loss_threshold", "label": "loss"}],
            "dp_audit": {"canaries": canaries, "guesses": 100, "gradient_runs": 1000},
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--canaries", type=int, default=1000)
    args = parser.parse_args(argv)
    before = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="bench-dp-audit-"))
    try:
        run = run_cli(make_config(workdir / "cache", args.epochs, args.canaries), workdir, "dp", 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    after = machine_info()
    target = the_target(run["report"])
    audit = target["dp_audit"]
    white = audit["white_box"]
    row = {
        "wall_s": run["wall_s"],
        "test_acc": target["utility"].get("test_acc"),
        "claimed_epsilon": target["privacy"]["epsilon"],
        "one_run_epsilon": audit["epsilon"],
        "guesses": audit["guesses"],
        "correct": audit["correct"],
        "canary_model_epsilon": audit["claimed_epsilon"],
        "gradient_canary_epsilon": white["epsilon"],
        "attack_epsilon": target["attacks"][0]["metrics"]["epsilon_lower_bound"]["epsilon"],
    }
    verdict = "PASS" if run["wall_s"] <= LIMIT_S else "FAIL"
    print(markdown_table(list(row), [[f"{v:.3g}" if isinstance(v, float) else v
                                      for v in row.values()]]))  # fmt: skip
    print(f"{verdict}: {run['wall_s']:.0f} s end to end (≤ {LIMIT_S:.0f} s)")
    write_result(
        NAME,
        {"requirement": REQUIREMENT, "epochs": args.epochs, "canaries": args.canaries, **row,
         "verdict": verdict, "log_tail": run["log_tail"], "machine": after,
         "load_note": load_note(before, after)},
    )  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
