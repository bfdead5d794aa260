"""Throughput of the adversarial-example membership attack I_A (Song et al. Eq. 18).

Requirement: scoring 10,000 examples with I_A (10-step PGD, small CNN) takes under 60 s on
2 cores.

A ``cnn_small`` is trained briefly on mnist5k members (speed does not depend on accuracy),
wrapped in a white-box ``Target`` (PROBS | INPUT_GRADIENTS, ε = 0.1), and
``adversarial_confidence`` (steps = 10) scores mnist5k's 5,000 images tiled twice. A sweep of
the attack's ``batch_size`` field on a subset reports examples/second per batch size.

Usage: .venv/bin/python benchmarks/bench_ia_scoring.py [--quick]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys
from typing import Any

import numpy as np
import torch
from _common import Clock, load_note, machine_info, markdown_table, set_threads, write_result

from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES
from privlab.threat_model import Access, Target, TargetInfo
from privlab.training.loop import TrainSpec, train

NAME = "ia_scoring"
REQUIREMENT = "Scoring 10,000 examples with I_A (10-step PGD, small CNN) under 60 s on 2 cores"
LIMIT_S = 60.0
N_EXAMPLES = 10_000
STEPS = 10
EPS = 0.1


def make_target(bundle: Any, epochs: int) -> tuple[Target, float]:
    torch.manual_seed(0)
    model = MODELS.build(
        "cnn_small", input_shape=bundle.input_shape, num_classes=bundle.num_classes
    )
    result = train(
        model,
        bundle.members,
        REGIMES.build("natural"),
        TrainSpec(epochs=epochs, batch_size=64),
        seed=0,
    )
    info = TargetInfo(
        name="cnn_small",
        num_classes=bundle.num_classes,
        input_shape=bundle.input_shape,
        value_range=(0.0, 1.0),
        eps=EPS,
    )
    target = Target(result.model, info, Access.PROBS | Access.INPUT_GRADIENTS)
    return target, result.seconds


def score(target: Target, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[Clock, Any]:
    attack = ATTACKS.build("adversarial_confidence", steps=STEPS, batch_size=batch)
    torch.manual_seed(0)  # PGD random starts
    with Clock() as clock:
        scores = attack.score(target, x, y)
    return clock, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch-size sweep")
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--sweep", type=int, nargs="+", default=None, help="batch sizes")
    parser.add_argument("--sweep-n", type=int, default=None, help="examples per sweep point")
    args = parser.parse_args(argv)
    sweep = args.sweep or ([128, 512, 2048] if args.quick else [64, 128, 256, 512, 1024, 2048])
    sweep_n = args.sweep_n or (1000 if args.quick else 2000)

    set_threads(2)
    before = machine_info()
    bundle = DATASETS.build("mnist5k", seed=0)
    target, train_s = make_target(bundle, args.train_epochs)
    x_all = torch.cat([bundle.members.x, bundle.nonmembers.x, bundle.population.x])
    y_all = torch.cat([bundle.members.y, bundle.nonmembers.y, bundle.population.y])
    reps = -(-N_EXAMPLES // len(y_all))
    x, y = x_all.repeat(reps, 1, 1, 1)[:N_EXAMPLES], y_all.repeat(reps)[:N_EXAMPLES]
    default_batch = ATTACKS.build("adversarial_confidence").batch_size
    print(REQUIREMENT)
    print(
        f"target trained {args.train_epochs} epochs in {train_s:.1f} s; scoring {len(y)} "
        f"examples; torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY {before['omp_wait_policy']}, load {before['loadavg_1_5_15']}"
    )

    score(target, x[:256], y[:256], default_batch)  # warm-up
    main_clock, scores = score(target, x, y, default_batch)
    assert len(scores) == N_EXAMPLES and np.isfinite(scores).all()
    passed = main_clock.wall < LIMIT_S
    print(
        f"\nI_A on {N_EXAMPLES} examples, batch_size {default_batch} (default): "
        f"{main_clock.wall:.1f} s wall, {main_clock.cpu:.1f} s CPU, "
        f"{N_EXAMPLES / main_clock.wall:.0f} ex/s -> {'PASS' if passed else 'FAIL'} (< {LIMIT_S} s)"
    )

    rows = []
    for batch in sweep:
        clock, _ = score(target, x[:sweep_n], y[:sweep_n], batch)
        rows.append(
            {
                "batch_size": batch,
                "n": sweep_n,
                "wall_s": clock.wall,
                "cpu_s": clock.cpu,
                "examples_per_s": sweep_n / clock.wall,
                "examples_per_cpu_s": sweep_n / clock.cpu,
                "projected_10k_s": N_EXAMPLES * clock.wall / sweep_n,
            }
        )
        print(f"  batch {batch:5d}: {sweep_n / clock.wall:7.0f} ex/s ({clock.wall:.2f} s)")
        sys.stdout.flush()
    best = max(rows, key=lambda r: r["examples_per_s"])

    after = machine_info()
    note = load_note(before, after)
    print(
        "\n"
        + markdown_table(
            ["batch_size", "n", "wall (s)", "ex/s", "ex/CPU-s", "projected 10k (s)"],
            [
                [
                    r["batch_size"],
                    r["n"],
                    r["wall_s"],
                    r["examples_per_s"],
                    r["examples_per_cpu_s"],
                    r["projected_10k_s"],
                ]
                for r in rows
            ],
        )
    )
    print(f"fastest batch_size in this sweep: {best['batch_size']} (default {default_batch})")
    print(f"\n{note}")
    print(f"RESULT: {'PASS' if passed else 'FAIL'} — {REQUIREMENT}")
    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": "PASS" if passed else "FAIL",
            "quick": args.quick,
            "limit_s": LIMIT_S,
            "n_examples": N_EXAMPLES,
            "steps": STEPS,
            "eps": EPS,
            "model": "cnn_small",
            "train_epochs": args.train_epochs,
            "train_seconds": train_s,
            "default_batch_size": default_batch,
            "seconds": main_clock.wall,
            "cpu_seconds": main_clock.cpu,
            "examples_per_s": N_EXAMPLES / main_clock.wall,
            "sweep": rows,
            "fastest_batch_size": best["batch_size"],
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
        },
    )
    print(f"wrote {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
