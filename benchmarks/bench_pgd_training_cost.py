"""Cost of PGD adversarial training relative to natural training, per epoch.

Requirement: PGD adversarial training with K steps costs at most 1.3·(K+1) times a natural
epoch (K attack steps of one forward + one input-backward each, plus the ordinary training
step, with 30 % slack for the perturbation bookkeeping).

What is timed is the product's code path: ``privlab.training.train`` with ``epochs = 1 + N``
on ``mnist5k`` members; the per-epoch wall time is read between consecutive ``on_epoch``
callbacks and the first (warm-up) epoch is dropped. Process CPU time is recorded too: it is
far less sensitive to other jobs on the machine than wall time.

Usage: .venv/bin/python benchmarks/bench_pgd_training_cost.py [--quick] [--profile]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import cProfile
import io
import itertools
import pstats
import statistics
import sys
import time
from typing import Any

import torch
from _common import load_note, machine_info, markdown_table, set_threads, write_result
from torch.utils.data import DataLoader, TensorDataset

from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training.loop import TrainSpec, train

NAME = "pgd_training_cost"
REQUIREMENT = "PGD adversarial training with K steps costs at most 1.3·(K+1) times a natural epoch"
SLACK = 1.3
EPS = 0.1


def build_model(name: str, bundle: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build(name, input_shape=bundle.input_shape, num_classes=bundle.num_classes)


def time_epochs(model_name: str, bundle: Any, regime: Any, batch: int, epochs: int) -> dict:
    """Run ``train`` for 1 warm-up + ``epochs`` epochs; per-epoch wall and CPU seconds."""
    marks: list[tuple[float, float]] = []

    def on_epoch(*_: object) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    model = build_model(model_name, bundle)
    spec = TrainSpec(epochs=1 + epochs, batch_size=batch, lr=1e-3)
    train(model, bundle.members, regime, spec, seed=0, on_epoch=on_epoch)
    wall = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    return {"wall": wall, "cpu": cpu}


def loader_seconds(bundle: Any, batch: int) -> float:
    """One epoch of the loader ``train`` builds, doing nothing with the batches."""
    data = bundle.members
    loader = DataLoader(
        TensorDataset(data.x, data.y),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def profile_epoch(model_name: str, bundle: Any, k: int, batch: int, top: int = 25) -> str:
    """cProfile of 1 epoch of PGD-K training (cumulative time, top functions)."""
    model = build_model(model_name, bundle)
    regime = REGIMES.build("pgd_at", eps=EPS, steps=k)
    prof = cProfile.Profile()
    prof.enable()
    train(model, bundle.members, regime, TrainSpec(epochs=1, batch_size=batch), seed=0)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 64 only, 2 measured epochs")
    parser.add_argument("--epochs", type=int, default=None, help="measured epochs per run")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--models", nargs="+", default=["cnn_small", "mlp"])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--profile", action="store_true", help="also cProfile one PGD epoch")
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 3)
    batches = args.batches or ([64] if args.quick else [64, 128])

    set_threads(2)
    before = machine_info()
    bundle = DATASETS.build("mnist5k", seed=0)
    print(f"{REQUIREMENT}\nmnist5k members: {len(bundle.members)}, measured epochs: {epochs}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY {before['omp_wait_policy']}, load {before['loadavg_1_5_15']}"
    )

    rows: list[dict[str, Any]] = []
    for model_name in args.models:
        for batch in batches:
            # Natural epochs are cheap: time them before and after the K sweep (2x the epochs
            # each) and pool them, so drift in the background load hits both sides alike.
            nat = time_epochs(model_name, bundle, REGIMES.build("natural"), batch, 2 * epochs)
            load_s = loader_seconds(bundle, batch)
            print(
                f"\n{model_name} batch {batch}: natural epoch (first block) "
                f"{statistics.mean(nat['wall']):.3f} s wall; loader alone {load_s:.3f} s"
            )
            pgd_runs = {}
            for k in args.ks:
                regime = REGIMES.build("pgd_at", eps=EPS, steps=k)
                pgd_runs[k] = time_epochs(model_name, bundle, regime, batch, epochs)
                print(f"  K={k:2d}: pgd epoch {statistics.mean(pgd_runs[k]['wall']):.3f} s")
                sys.stdout.flush()
            nat2 = time_epochs(model_name, bundle, REGIMES.build("natural"), batch, 2 * epochs)
            nat = {key: nat[key] + nat2[key] for key in nat}
            t_nat, c_nat = statistics.mean(nat["wall"]), statistics.mean(nat["cpu"])
            print(
                f"  natural epoch {t_nat:.3f} s wall, {c_nat:.3f} s CPU (first block "
                f"{statistics.mean(nat['wall'][: 2 * epochs]):.3f}, last block "
                f"{statistics.mean(nat2['wall']):.3f})"
            )
            for k, pgd in pgd_runs.items():
                t_pgd, c_pgd = statistics.mean(pgd["wall"]), statistics.mean(pgd["cpu"])
                bound = SLACK * (k + 1)
                row = {
                    "model": model_name,
                    "batch_size": batch,
                    "K": k,
                    "t_natural_s": t_nat,
                    "t_pgd_s": t_pgd,
                    "ratio": t_pgd / t_nat,
                    "cpu_ratio": c_pgd / c_nat,
                    "bound": bound,
                    "pass": t_pgd / t_nat <= bound,
                    "ratio_of_min_epochs": min(pgd["wall"]) / min(nat["wall"]),
                    "natural_epochs_wall_s": nat["wall"],
                    "pgd_epochs_wall_s": pgd["wall"],
                    "natural_epochs_cpu_s": nat["cpu"],
                    "pgd_epochs_cpu_s": pgd["cpu"],
                    "loader_only_epoch_s": load_s,
                }
                rows.append(row)
                print(
                    f"  K={k:2d}: pgd epoch {t_pgd:.3f} s, ratio {row['ratio']:.2f} "
                    f"(CPU {row['cpu_ratio']:.2f}) vs bound {bound:.1f} "
                    f"{'PASS' if row['pass'] else 'FAIL'}"
                )
                sys.stdout.flush()

    after = machine_info()
    note = load_note(before, after)
    passed = all(r["pass"] for r in rows)
    table = markdown_table(
        [
            "model",
            "batch",
            "K",
            "t_nat (s)",
            "t_pgd (s)",
            "ratio",
            "CPU ratio",
            "min/min ratio",
            "bound",
            "ok",
        ],
        [
            [
                r["model"],
                r["batch_size"],
                r["K"],
                r["t_natural_s"],
                r["t_pgd_s"],
                r["ratio"],
                r["cpu_ratio"],
                r["ratio_of_min_epochs"],
                r["bound"],
                "PASS" if r["pass"] else "FAIL",
            ]
            for r in rows
        ],
    )
    print("\n" + table)
    print(f"\n{note}")
    print(f"RESULT: {'PASS' if passed else 'FAIL'} — {REQUIREMENT}")

    profile = None
    failing = [r for r in rows if not r["pass"]]
    if args.profile or failing:
        r = failing[0] if failing else {"model": args.models[0], "batch_size": batches[0], "K": 10}
        print(f"\ncProfile of one PGD epoch ({r['model']}, batch {r['batch_size']}, K={r['K']}):")
        profile = profile_epoch(r["model"], bundle, r["K"], r["batch_size"])
        print(profile)

    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": "PASS" if passed else "FAIL",
            "quick": args.quick,
            "measured_epochs": epochs,
            "warmup_epochs": 1,
            "eps": EPS,
            "dataset": "mnist5k members",
            "n_train": len(bundle.members),
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
            "rows": rows,
            "profile": profile,
        },
    )
    print(f"wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
