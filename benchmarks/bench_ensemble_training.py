"""Vectorised ensemble training vs sequential training of K reference CNNs.

Requirement (model-ensembles issue): training K = 64 reference models as one ensemble
(``privlab.training.ensembles.train_ensemble``) is at least 5x faster than 64 sequential
runs of ``privlab.training.train``, with the same final test accuracy within noise.

Setup: ``mnist5k`` (seed 0); the pool is ``bundle.members`` (2,000 images); model k trains on
a random half of the pool (1,000 images, LiRA-style masks, numpy seed 0) from seed k;
``cnn_small`` with small reference-model widths (default channels (8, 16), fc 32), Adam
1e-3, batch 64, natural training; test accuracy on ``bundle.nonmembers`` (2,000 images).

Timing: the ensemble trains all K models. The sequential side trains the first
``--seq-runs`` models (same seeds and masks) and its time is extrapolated linearly to K
models (each run is independent, so the cost is K times the mean run); the output says so.
With the same seed and mask the ensemble reproduces the sequential model step for step
(same batches, same updates), so the paired accuracies agree up to float rounding. The
requirement's "within noise" test is paired over the timed models: |mean(acc_ens − acc_seq)|
≤ 2·SE of the differences + 0.005. Mean ± std over all K members is reported beside the
sequential runs' (different models, so they differ by sampling noise).

Usage: .venv/bin/python benchmarks/bench_ensemble_training.py [--quick] [--models K]
       [--epochs E] [--seq-runs N] [--channels 8 16] [--fc 32] [--threads 2]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import math
import statistics
import sys
from typing import Any

import numpy as np
import torch
from _common import Clock, load_note, machine_info, markdown_table, set_threads, write_result

from privlab.metrics.utility import accuracy
from privlab.registry import DATASETS, MODELS, REGIMES
from privlab.training.ensembles import train_ensemble
from privlab.training.loop import TrainSpec, train

NAME = "ensemble_training"
REQUIREMENT = (
    "training 64 reference models as one ensemble is ≥ 5x faster than 64 sequential runs, "
    "same final test accuracy within noise"
)
MIN_SPEEDUP = 5.0


def half_masks(k: int, n: int, seed: int = 0) -> np.ndarray:
    """K rows, each selecting a uniformly random half of the pool."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((k, n), dtype=bool)
    for row in masks:
        row[rng.permutation(n)[: n // 2]] = True
    return masks


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 4 timed sequential runs")
    parser.add_argument("--models", type=int, default=64, help="K, models in the ensemble")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (quick: 2)")
    parser.add_argument("--seq-runs", type=int, default=None, help="default 8 (quick: 4)")
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--fc", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_check.sh)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 10)
    seq_runs = min(args.seq_runs or (4 if args.quick else 8), args.models)

    set_threads(args.threads)
    before = machine_info()
    bundle = DATASETS.build("mnist5k", seed=0)
    pool, test = bundle.members, bundle.nonmembers
    masks = half_masks(args.models, len(pool))
    seeds = list(range(args.models))
    spec = TrainSpec(epochs=epochs, batch_size=args.batch_size, optimizer="adam", lr=1e-3)
    regime = REGIMES.build("natural")
    arch = {"channels": list(args.channels), "fc": args.fc}

    def make_model(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return MODELS.build(
            "cnn_small",
            input_shape=bundle.input_shape,
            num_classes=bundle.num_classes,
            channels=tuple(args.channels),
            fc=args.fc,
        )

    n_params = sum(p.numel() for p in make_model(0).parameters())
    print(
        f"{REQUIREMENT}\nmnist5k pool {len(pool)}, each model on {len(pool) // 2}; test {len(test)}"
    )
    print(
        f"cnn_small {arch} ({n_params} parameters), K={args.models}, {epochs} epochs, "
        f"batch {args.batch_size}, Adam 1e-3; torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, OMP_WAIT_POLICY {before['omp_wait_policy']}, "
        f"load {before['loadavg_1_5_15']}"
    )

    # Warm-up (untimed): the first call of each path pays one-off library initialisation
    # (oneDNN kernels, functorch), which would otherwise be charged to whichever runs first.
    warm = TrainSpec(epochs=1, batch_size=args.batch_size)
    small = pool.subset(np.arange(4 * args.batch_size))
    train(make_model(0), small, regime, warm, seed=0)
    train_ensemble(make_model, small, masks[:2, : len(small)], regime, warm, seeds=[0, 1])

    with Clock() as ens_clock:
        ensemble = train_ensemble(
            make_model,
            pool,
            masks,
            regime,
            spec,
            seeds=seeds,
            chunk_size=args.chunk_size,
            device=args.device,
        )
    ens_acc = [accuracy(r.model.cpu(), test.x, test.y) for r in ensemble]
    print(f"ensemble: {ens_clock.wall:.1f} s wall, {ens_clock.cpu:.1f} s CPU for {args.models}")
    sys.stdout.flush()

    seq_acc: list[float] = []
    seq_wall: list[float] = []
    seq_cpu: list[float] = []
    for k in range(seq_runs):
        subset = pool.subset(np.flatnonzero(masks[k]))
        with Clock() as clock:
            result = train(
                make_model(seeds[k]), subset, regime, spec, seed=seeds[k], device=args.device
            )
        seq_wall.append(clock.wall)
        seq_cpu.append(clock.cpu)
        seq_acc.append(accuracy(result.model.cpu(), test.x, test.y))
        print(f"  sequential run {k}: {clock.wall:.2f} s, test acc {seq_acc[-1]:.4f}")
        sys.stdout.flush()
    seq_total_wall = statistics.fmean(seq_wall) * args.models
    seq_total_cpu = statistics.fmean(seq_cpu) * args.models
    extrapolated = seq_runs < args.models

    speedup = seq_total_wall / ens_clock.wall
    cpu_speedup = seq_total_cpu / ens_clock.cpu
    ens_mean, ens_std = mean_std(ens_acc)
    seq_mean, seq_std = mean_std(seq_acc)
    # Same-model comparison: ensemble member k and sequential run k share seed and mask.
    diffs = [a - b for a, b in zip(ens_acc, seq_acc, strict=False)]
    same_mean = statistics.fmean(ens_acc[:seq_runs])
    paired_se = mean_std(diffs)[1] / math.sqrt(len(diffs))
    acc_ok = abs(statistics.fmean(diffs)) <= 2 * paired_se + 0.005
    paired = max(abs(d) for d in diffs)
    # All K members vs the timed sequential runs (different models: sampling noise only).
    unpaired_se = math.sqrt(ens_std**2 / len(ens_acc) + seq_std**2 / len(seq_acc))
    passed = speedup >= MIN_SPEEDUP and acc_ok

    after = machine_info()
    note = load_note(before, after)
    seq_label = (
        f"sequential ({seq_runs} runs timed, ×{args.models / seq_runs:g} extrapolated)"
        if extrapolated
        else "sequential"
    )
    table = markdown_table(
        ["side", "models", "wall (s)", "CPU (s)", "s / model", "test acc mean", "test acc std"],
        [
            [
                "ensemble",
                args.models,
                ens_clock.wall,
                ens_clock.cpu,
                ens_clock.wall / args.models,
                ens_mean,
                ens_std,
            ],
            [
                seq_label,
                args.models,
                seq_total_wall,
                seq_total_cpu,
                statistics.fmean(seq_wall),
                seq_mean,
                seq_std,
            ],
        ],
    )
    print("\n" + table)
    print(
        f"\nspeedup {speedup:.2f}x wall ({cpu_speedup:.2f}x CPU time), required ≥ {MIN_SPEEDUP}x; "
        f"same {seq_runs} models: ensemble {same_mean:.4f} vs sequential {seq_mean:.4f} "
        f"(max |diff| {paired:.4f}; within noise: {acc_ok}); all {args.models} members vs "
        f"the sequential runs: {ens_mean - seq_mean:+.4f} (2·SE {2 * unpaired_se:.4f})"
    )
    print(note)
    print(f"RESULT: {'PASS' if passed else 'FAIL'} — {REQUIREMENT}")

    payload: dict[str, Any] = {
        "requirement": REQUIREMENT,
        "result": "PASS" if passed else "FAIL",
        "quick": args.quick,
        "dataset": "mnist5k, pool = members (2000), each model on a random half",
        "model": {"name": "cnn_small", **arch, "parameters": n_params},
        "train": {
            "epochs": epochs,
            "batch_size": args.batch_size,
            "optimizer": "adam",
            "lr": 1e-3,
            "regime": "natural",
        },
        "models": args.models,
        "chunk_size": args.chunk_size,
        "ensemble_wall_s": ens_clock.wall,
        "ensemble_cpu_s": ens_clock.cpu,
        "sequential_runs_timed": seq_runs,
        "sequential_extrapolated": extrapolated,
        "sequential_wall_s": seq_total_wall,
        "sequential_cpu_s": seq_total_cpu,
        "sequential_run_wall_s": seq_wall,
        "sequential_run_cpu_s": seq_cpu,
        "speedup_wall": speedup,
        "speedup_cpu": cpu_speedup,
        "min_speedup": MIN_SPEEDUP,
        "ensemble_test_acc": ens_acc,
        "sequential_test_acc": seq_acc,
        "ensemble_test_acc_mean_std": [ens_mean, ens_std],
        "sequential_test_acc_mean_std": [seq_mean, seq_std],
        "ensemble_test_acc_same_models_mean": same_mean,
        "accuracy_within_noise": acc_ok,
        "max_paired_acc_diff": paired,
        "unpaired_two_se": 2 * unpaired_se,
        "load_note": note,
        "machine_before": before,
        "machine_after": after,
        "device": args.device,
    }
    path = write_result(NAME if args.device == "cpu" else f"{NAME}_{args.device}", payload)
    print(f"wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
