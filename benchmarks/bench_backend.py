"""The execution backend's costs (issue: beyond one machine).

Requirements:

* per-task overhead on a warm local Ray cluster at most 50 ms: ``--tasks`` no-op tasks through
  :meth:`RayBackend.map` (each with a shared input, as a study's units have), wall time over
  the count, after a warm-up round;
* a 64-model reference set split into 4 tasks on 2 nodes of 1 CPU (a head and a second node,
  each started with ``ray start``) within 1.3× of the same ensemble trained locally on 2
  threads (the local backend's threads, one torch thread each): the reference models of
  :mod:`privlab.studies.targets.reference_models` on all 5,000 mnist5k images, cnn_small 8/16 +
  FC 32 (bench_ensemble_training's), 10 epochs; the two
  ensembles are also checked to be the same, weight for weight.

Writes benchmarks/results/backend.json.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import Clock, load_note, machine_info, set_threads, write_result

from privlab.config.base import Component, DataConfig, TrainConfig
from privlab.data.from_config import bundle_from_config
from privlab.run.backend import LocalBackend, RayBackend
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import SilentProgress
from privlab.studies.targets.config import ReferenceModelsConfig
from privlab.studies.targets.reference_models import _train, balanced_masks, reference_pool

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _noop(i: int, *, table: torch.Tensor) -> int:
    return i


def _warm(i: int) -> int:
    """A warm worker has privlab's training modules imported, as after a first task."""
    import privlab.studies.targets.reference_models  # noqa: F401

    return i


def _ray(*args: str) -> None:
    done = subprocess.run([RAY, *args], capture_output=True, text=True, env=os.environ | ENV)
    if done.returncode:
        raise RuntimeError(f"ray {' '.join(args)}: {done.stderr[-1500:]}")


def _references(backend, count: int, tasks: int, epochs: int):
    bundle = bundle_from_config(DataConfig(name="mnist5k"), 0)
    pool = reference_pool(bundle, online=True)  # all 5,000 images
    cfg = ReferenceModelsConfig(count=count, tasks=tasks)
    masks = balanced_masks(len(pool), count, 0.5, 30_000)
    regime = build_regime(Component(name="natural"), bundle)
    model = Component(name="cnn_small", params={"channels": [8, 16], "fc": 32})

    def make(seed: int) -> torch.nn.Module:
        return build_model(model, bundle, seed, regime)

    seeds = [50_000 + k for k in range(count)]
    spec = TrainConfig(epochs=epochs, batch_size=64)
    with Clock() as clock:
        models, _, _ = _train(
            cfg, make, pool, masks, regime, spec, seeds, torch.device("cpu"),
            SilentProgress(), "bench", backend,
        )  # fmt: skip
    return models, clock.wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    set_threads(2)
    os.environ.update(ENV)
    before = machine_info()
    local_models, local_s = _references(LocalBackend(workers=2), args.models, 4, args.epochs)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *node)
        _ray("start", f"--address=127.0.0.1:{port}", *node)
        backend = RayBackend(address=f"127.0.0.1:{port}")
        table = torch.randn(256, 256)
        list(backend.map(_warm, list(range(8))))  # warm workers
        list(backend.map(_noop, list(range(20)), shared={"table": table}))
        start = time.perf_counter()
        list(backend.map(_noop, list(range(args.tasks)), shared={"table": table}))
        overhead = (time.perf_counter() - start) / args.tasks
        ray_models, ray_s = _references(backend, args.models, 4, args.epochs)
    finally:
        import ray

        ray.shutdown()  # before the nodes go, or the driver prints their dying logs
        _ray("stop", "--force")
    same = all(
        torch.equal(a, b)
        for ma, mb in zip(local_models, ray_models, strict=True)
        for a, b in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True)
    )
    after = machine_info()
    ratio = ray_s / local_s
    ok = overhead <= 0.050 and ratio <= 1.3 and same
    result = {
        "requirement": "per-task overhead ≤ 50 ms; 64 reference models in 4 tasks on 2 nodes "
        "of 1 CPU within 1.3× of the local ensemble on 2 threads",
        "task_overhead_ms": overhead * 1000,
        "tasks": args.tasks,
        "reference_models": args.models,
        "epochs": args.epochs,
        "local_seconds": local_s,
        "ray_seconds": ray_s,
        "ray_over_local": ratio,
        "same_weights": same,
        "verdict": "PASS" if ok else "FAIL",
        "load_note": load_note(before, after),
        "machine": before,
    }
    path = write_result("backend", result)
    print(
        f"task overhead {overhead * 1000:.1f} ms; {args.models} reference models: local "
        f"{local_s:.1f} s, Ray 2 nodes {ray_s:.1f} s ({ratio:.2f}×), same weights: {same}: "
        f"{result['verdict']}; {result['load_note']}; {path}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
