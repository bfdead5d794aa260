"""The cost model of docs/scaling.md: how long large audits take on 1, 8 and 64 devices.

It rests on measurements, never on a guess it does not print:

- per-model training throughput and FLOPs per example of each architecture
  (``benchmarks/bench_throughput.py`` → ``results/throughput_cpu.json``, and
  ``results/throughput_cuda.json`` once ``benchmarks/gpu_check.sh`` has run on a GPU);
- shadow heads per second (``results/shadow_heads_100000.json``), the residual
  reconstructor's seconds per step (``results/weak_adversary_residual_n10.json``) and the
  per-task overhead of the Ray backend (``results/backend.json``).

A GPU's examples per second come from ``throughput_cuda.json`` when it exists. Until then
they are a *projection*: the architecture's measured FLOPs per example over a sustained rate
given by ``--gpu-tflops LOW HIGH`` (both printed, and every GPU figure is marked
"projected"). Independent units (reference models, (target, seed) cells, shadow-head shards)
are spread over the devices longest-first; the makespan is what is printed.

Usage: .venv/bin/python benchmarks/scaling_model.py [--gpu-tflops 20 80] [--epochs 100]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEVICES = (1, 8, 64)


@dataclass(frozen=True)
class Unit:
    """``count`` independent trainings of ``arch`` over ``examples`` examples each, at
    ``passes`` forward-backward passes per example (PGD-K adversarial training: K + 1)."""

    arch: str
    count: int
    examples: float
    passes: float = 1.0
    what: str = ""


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rates(gpu_tflops: float) -> tuple[dict[str, float], dict[str, float], bool]:
    """Examples per second per architecture on this CPU and on one GPU (measured, or
    projected from FLOPs at ``gpu_tflops``), and whether the GPU figures were measured."""
    cpu = {r["arch"]: r for r in (load("throughput_cpu") or {"archs": []})["archs"]}
    cuda = load("throughput_cuda")
    if cuda is not None:
        gpu = {r["arch"]: r["examples_per_second"] for r in cuda["archs"]}
        return {a: r["examples_per_second"] for a, r in cpu.items()}, gpu, True
    gpu = {a: gpu_tflops * 1e12 / r["train_flops_per_example"] for a, r in cpu.items()}
    return {a: r["examples_per_second"] for a, r in cpu.items()}, gpu, False


def makespan(seconds: list[float], devices: int) -> float:
    """Longest-processing-time-first list scheduling of independent units."""
    loads = [0.0] * devices
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def unit_seconds(units: list[Unit], rate: dict[str, float]) -> list[float]:
    return [u.examples * u.passes / rate[u.arch] for u in units for _ in range(u.count)]


def lira(epochs: int) -> list[Unit]:
    """LiRA with 256 reference models of a WRN-28-2 on CIFAR-10: each on half of the 50,000
    training images for ``epochs`` epochs, then every model scores the 50,000 candidates and
    their mirror images (a forward pass, a third of a training pass) in the same task."""
    return [Unit("wrn28_2_cifar10", 256, 25_000 * epochs + 100_000 / 3, 1.0, "train, score")]


def song_grid(seeds: int, epochs: dict[str, int]) -> list[Unit]:
    """Song et al.'s grid as privlab runs it (``seeds`` seeds per cell). CIFAR-10 (WRN-34-10,
    the paper's (16s, 32s, 64s) at s = 10, 5 units per group): natural, PGD-AT, Dist-AT and
    TRADES (Table 4), adv-train ratios 1/2 and 3/4 (Table 5), ε 2/255 and 4/255 (Table 6);
    Fig. 3's capacity scales are left out (they are smaller WRNs, not measured here).
    Fashion-MNIST (the paper's CNN): natural and the three robust regimes (Table 3), three
    verified ones (Table 9, counted as PGD-AT's cost). Yale faces (the paper's CNN): the same
    seven, on 1,900 images. PGD-7 costs 8 passes (measured: PGD-K costs at most K + 1 times
    a natural epoch, results/pgd_training_cost.json), TRADES-10 and Dist-AT 11."""
    c, f, y = epochs["cifar10"], epochs["fmnist"], epochs["yale"]
    robust = [8.0, 11.0, 11.0]  # PGD-AT, Dist-AT, TRADES
    cells = [Unit("wrn34_10_cifar10", seeds, 50_000 * c, 1.0, "CIFAR-10 natural")]
    cells += [Unit("wrn34_10_cifar10", seeds, 50_000 * c, p, "CIFAR-10 robust") for p in robust]
    cells += [Unit("wrn34_10_cifar10", seeds, 50_000 * c, 1 + 7 * r, "CIFAR-10 ratio")
              for r in (0.5, 0.75)]  # fmt: skip
    cells += [Unit("wrn34_10_cifar10", 2 * seeds, 50_000 * c, 8.0, "CIFAR-10 ε sweep")]
    for arch, n, e in (("cnn_fmnist", 60_000, f), ("cnn_yale", 1_900, y)):
        cells.append(Unit(arch, seeds, n * e, 1.0, f"{arch} natural"))
        cells += [Unit(arch, seeds, n * e, p, f"{arch} robust") for p in [*robust, 8, 8, 8]]
    return cells


def fmt(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def training_rows(name: str, units: list[Unit], devices: list[tuple[str, dict[str, float]]]
                  ) -> list[str]:  # fmt: skip
    """A workload's rows: its units' makespan on 1, 8 and 64 of each kind of device."""
    rows = []
    for label, rate in devices:
        secs = unit_seconds(units, rate)
        spans = " | ".join(fmt(makespan(secs, d)) for d in DEVICES)
        rows.append(f"| {name} | {label} | {len(secs):,} | {spans} |")
    return rows


def heads_rows(heads: int) -> list[str]:
    """Shadow heads: measured on this CPU, spread over CPU nodes like it (they are tiny
    models; a GPU would not be the unit that matters)."""
    bench = load("shadow_heads_100000")
    if bench is None:
        return []
    per_s = bench["heads_per_second"]
    spans = " | ".join(fmt(heads / per_s / d) for d in DEVICES)
    return [f"| {heads:,} shadow heads | 2-core CPU nodes | {math.ceil(heads / 10_000):,} shards | "
            f"{spans} |"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-tflops", type=float, nargs=2, default=[20.0, 80.0])
    parser.add_argument("--epochs", type=int, default=100, help="LiRA's reference models")
    parser.add_argument("--seeds", type=int, default=3, help="Song grid: seeds per cell")
    parser.add_argument("--song-epochs", type=int, nargs=3, default=[200, 50, 100],
                        metavar=("CIFAR10", "FMNIST", "YALE"))  # fmt: skip
    args = parser.parse_args(argv)
    cpu, gpu_low, measured = rates(args.gpu_tflops[0])
    devices = [("2-core CPU node (measured)", cpu)]
    if measured:
        devices.append((load("throughput_cuda")["gpu"] + " (measured)", gpu_low))  # type: ignore[index]
    else:
        low, high = args.gpu_tflops
        devices += [(f"GPU at {low:g} TFLOP/s (projected)", gpu_low),
                    (f"GPU at {high:g} TFLOP/s (projected)", rates(high)[1])]  # fmt: skip
    song = song_grid(args.seeds, dict(zip(("cifar10", "fmnist", "yale"), args.song_epochs,
                                          strict=True)))  # fmt: skip
    print("| workload | device | units | 1 | 8 | 64 |")
    print("|---|---|---|---|---|---|")
    for line in [
        *training_rows(f"LiRA-256 WRN-28-2 ({args.epochs} epochs)", lira(args.epochs), devices),
        *training_rows("Song et al. grid", song, devices),
        *heads_rows(2_560_000),
    ]:  # fmt: skip
        print(line)
    if not measured:
        print(f"\nGPU rows projected at {args.gpu_tflops[0]:g} and {args.gpu_tflops[1]:g} "
              "sustained TFLOP/s (no results/throughput_cuda.json yet).")  # fmt: skip
    recon = load("weak_adversary_residual_n10")
    if recon is not None:
        step = recon["train_seconds"] / recon["steps"]
        batch = recon["reconstructor"]["batch_size"]
        print(
            f"Residual reconstructor: {step:.2f} s per step of {batch} on this CPU; 10^6 steps "
            f"(the paper's budget) = {fmt(step * 1e6)} per (N, seed) fit."
        )
    backend = load("backend")
    if backend is not None:
        print(f"Ray per-task overhead: {backend['task_overhead_ms']:.1f} ms (results/backend.json)"
              "; a unit here lasts minutes to days, so it does not show.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
