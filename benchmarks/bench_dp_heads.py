"""DP-SGD heads trained as one stacked ensemble (``train_heads_dp``): heads per second.

DP-SGD shadow and victim models are most of two claim runs: Balle et al.'s DP arm on full MNIST
(3,000 MLPs 784 → 16 → 10 per ε, N = 101, 100 epochs; ``balle2022_informed_mnist.yaml``) and
Maciazek & Allison's Fig. 4 (FC(10) heads on 256 frozen features, N = 10 and 40;
``maciazek_fig4_dp_mnist.yaml``). This times both shapes on random inputs (timing does not
depend on the values), Poisson sampling and noise included, on one thread (the queue runs one
thread per config), and reports heads per second and seconds per DP-SGD step.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys

import torch
from _common import Clock, load_note, machine_info, markdown_table, set_threads, write_result

from privlab.training.heads import HeadDP, HeadSpec, init_heads, train_heads_dp

SHAPES = {
    "Balle MLP 784-16-10, N=101, 100 epochs": (HeadSpec(hidden=16, epochs=100, lr=0.5), 101, 784),
    "Maciazek FC(10) on 256, N=10": (HeadSpec(), 10, 256),
    "Maciazek FC(10) on 256, N=40": (HeadSpec(), 40, 256),
}


def time_shape(spec: HeadSpec, n: int, features: int, heads: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(heads, n, features, generator=gen)
    y = torch.randint(0, spec.outputs, (heads, n), generator=gen)
    params = init_heads(spec, heads, features, generator=gen)
    dp = HeadDP(clip=1.0, noise_multiplier=1.0)
    with Clock() as clock:
        train_heads_dp(spec, dp, params, x, y, generator=gen)
    steps = spec.epochs_for(n) * dp.batches_per_epoch(n)
    return {"heads": heads, "steps": steps, "cpu_seconds": clock.cpu, "wall_seconds": clock.wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=256)
    args = parser.parse_args(argv)
    set_threads(1)
    before = machine_info()
    results = {name: time_shape(*shape, args.heads) for name, shape in SHAPES.items()}
    after = machine_info()
    rows = [
        [name, r["heads"] / r["cpu_seconds"], r["cpu_seconds"] / r["steps"]]
        for name, r in results.items()
    ]
    print(markdown_table(["shape", "heads / CPU s", "CPU s / step"], rows))
    payload = {"results": results, "load_note": load_note(before, after), "machine": before}
    path = write_result("dp_heads", payload)
    print(f"\n{args.heads} heads each, one thread; {payload['load_note']}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
