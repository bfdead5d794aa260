"""Stacked head training vs the same heads one by one (transfer-learning shadow models).

Requirement (reconstruction issue): "Ensemble head training at least 100× faster than training
the same heads one by one in a Python loop (same steps, same results), and at least 10% of this
machine's dense-matmul FLOP rate measured in the same run".

Heads: the MNIST recipe of Maciazek & Allison Table 3 (FC(10) on 256 features, N = 10, full-batch
GD, 26 + 3N/5 = 32 epochs, lr 0.01, weight decay 1e-5, σ_init 0.002). Features are random
(timing does not depend on their values). The loop trains ``--loop-heads`` heads with
``torch.optim.SGD`` and is extrapolated per head; the first ones are compared with the
ensemble's (max |Δ|). FLOPs count the forward and the two backward products per epoch
(3 · 2·N·F·C per head); the reference rate is a 2048² float32 matmul timed in the same run.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys

import torch
from _common import Clock, load_note, machine_info, set_threads, write_result

from privlab.training.heads import HeadSpec, init_heads, train_heads, train_heads_loop


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(size, size)
    a @ a  # warm-up
    with Clock() as c:
        for _ in range(repeats):
            a @ a
    return repeats * 2 * size**3 / c.wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=20_000)
    parser.add_argument("--loop-heads", type=int, default=100)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--features", type=int, default=256)
    args = parser.parse_args(argv)
    set_threads(2)
    before = machine_info()
    spec = HeadSpec()
    k, n, f = args.heads, args.n, args.features
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(k, n, f, generator=gen), torch.randint(0, 10, (k, n), generator=gen)
    params = init_heads(spec, k, f, generator=gen)
    rate = matmul_rate()
    with Clock() as ens:
        stacked = train_heads(spec, params, x, y)
    m = args.loop_heads
    with Clock() as loop:
        looped = train_heads_loop(spec, {a: v[:m] for a, v in params.items()}, x[:m], y[:m])
    diff = max(float((stacked[a][:m] - looped[a]).abs().max()) for a in params)
    per_head_loop, per_head_ens = loop.wall / m, ens.wall / k
    flops = k * spec.epochs_for(n) * 3 * 2 * n * f * spec.outputs
    achieved = flops / ens.wall
    speedup = per_head_loop / per_head_ens
    passed = speedup >= 100 and achieved >= 0.1 * rate and diff < 1e-5
    after = machine_info()
    result = {
        "requirement": "≥100× the one-by-one loop, ≥10% of the dense-matmul FLOP rate",
        "heads": k,
        "loop_heads": m,
        "ensemble_seconds": ens.wall,
        "loop_seconds_per_head": per_head_loop,
        "speedup": speedup,
        "achieved_gflops": achieved / 1e9,
        "matmul_gflops": rate / 1e9,
        "flop_ratio": achieved / rate,
        "max_abs_difference": diff,
        "verdict": "PASS" if passed else "FAIL",
        "load_note": load_note(before, after),
        "machine": before,
    }
    path = write_result("head_ensemble", result)
    print(
        f"{k} heads in {ens.wall:.2f} s ({per_head_ens * 1e6:.0f} µs/head); loop "
        f"{per_head_loop * 1e3:.1f} ms/head: {speedup:.0f}× faster; {achieved / 1e9:.1f} GFLOP/s "
        f"of {rate / 1e9:.1f} measured ({100 * achieved / rate:.1f}%); max |Δ| {diff:.1e}: "
        f"{result['verdict']}; {result['load_note']}; {path}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
