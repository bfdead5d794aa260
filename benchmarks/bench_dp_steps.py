"""The DP-SGD steps of the claim runs: stacked DP heads, and a federated DP client's clipped sum.

DP-SGD shadow and victim models are most of two claim runs: Balle et al.'s DP arm on full MNIST
(3,000 MLPs 784 → 16 → 10 per ε, N = 101, 100 epochs; ``balle2022_informed_mnist.yaml``) and
Maciazek & Allison's Fig. 4 (FC(10) heads on 256 frozen features, N = 10 and 40;
``maciazek_fig4_dp_mnist.yaml``). This times both shapes on random inputs (timing does not
depend on the values), Poisson sampling and noise included, on one thread (the queue runs one
thread per config), and reports heads per second and seconds per DP-SGD step.

Liu et al.'s Fig. 3 trains FedAvg with DP-SGD clients (the two-layer MLP 784–256–10, client
batches of 4 and 8) for about 1,200 rounds of 10 clients, six times per DP point (the learning
rate's tuning). The client's clipped sum is timed both ways on the same batch: from the linear
layers' inputs and output gradients (``linear_clipped_sum``, what the ``dp`` defence uses for
such a model) and from torch.func's per-example gradients (what it uses otherwise), with the
largest relative difference between the two.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys

import torch
from _common import (
    Clock,
    cpu_per_call,
    load_note,
    machine_info,
    markdown_table,
    set_threads,
    write_result,
)
from torch import nn

from privlab.federated.defences.dp_sgd import per_example_gradients
from privlab.federated.defences.linear_clipping import linear_clipped_sum
from privlab.training import dp as dpsgd
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


def time_client(batch: int, repeats: int = 200) -> dict[str, float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    ways = {
        "linear": lambda: linear_clipped_sum(model, params, x, y, 1.0),
        "per_example": lambda: dpsgd.clipped_sum(
            per_example_gradients(model, params, x, y), 1.0, stabiliser=0.0
        )[0],
    }
    out: dict[str, float] = {}
    for name, way in ways.items():
        out[f"{name}_ms"] = 1e3 * cpu_per_call(way, repeats)
    a, b = ways["linear"](), ways["per_example"]()
    assert a is not None
    out["max_rel_diff"] = max(float((a[n] - b[n]).abs().max() / b[n].abs().max()) for n in b)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=256)
    args = parser.parse_args(argv)
    set_threads(1)
    before = machine_info()
    results = {name: time_shape(*shape, args.heads) for name, shape in SHAPES.items()}
    clients = {f"MLP 784-256-10, B={b}": time_client(b) for b in (4, 8)}
    after = machine_info()
    rows = [
        [name, r["heads"] / r["cpu_seconds"], r["cpu_seconds"] / r["steps"]]
        for name, r in results.items()
    ]
    print(markdown_table(["shape", "heads / CPU s", "CPU s / step"], rows) + "\n")
    rows = [
        [
            name,
            r["per_example_ms"],
            r["linear_ms"],
            r["per_example_ms"] / r["linear_ms"],
            r["max_rel_diff"],
        ]
        for name, r in clients.items()
    ]
    print(
        markdown_table(
            ["DP client", "per-example ms", "linear ms", "speed-up", "max rel. diff"], rows
        )
    )
    payload = {
        "results": results,
        "clients": clients,
        "load_note": load_note(before, after),
        "machine": before,
    }
    path = write_result("dp_steps", payload)
    print(f"\n{args.heads} heads each, one thread; {payload['load_note']}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
