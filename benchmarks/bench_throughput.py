"""Per-model training throughput of the architectures the scaling cost model rests on.

For each architecture: one natural training step (forward, backward, SGD update with
momentum) on a batch of random inputs of the dataset's shape, timed over enough steps to
last ``--seconds`` after one warm-up step; and its floating-point operations per example,
counted by ``torch.utils.flop_counter.FlopCounterMode`` over the same step. The content of
the inputs does not change the cost of a dense network, so no dataset is needed.

The result (``benchmarks/results/throughput_<device>.json``) gives examples per second,
FLOPs per example and the sustained FLOP rate; ``benchmarks/scaling_model.py`` turns it
into the run times of docs/scaling.md. ``benchmarks/gpu_check.sh`` runs it with
``--device cuda`` where a GPU is present.

Usage: .venv/bin/python benchmarks/bench_throughput.py [--device cpu|cuda] [--seconds S]
       [--only NAME ...]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from _common import load_note, machine_info, markdown_table, set_threads, write_result
from torch.utils.flop_counter import FlopCounterMode

from privlab.registry import MODELS


@dataclass(frozen=True)
class Arch:
    """A model of the registry at a dataset's input shape."""

    name: str
    model: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    batch: int  # the batch size of the timed steps on a GPU; a CPU uses cpu_batch
    cpu_batch: int


ARCHS = [
    Arch("wrn28_2_cifar10", "wide_resnet", {"scale": 2, "units_per_group": 4},
         (3, 32, 32), 10, 256, 64),
    Arch("wrn34_10_cifar10", "wide_resnet", {"scale": 10, "units_per_group": 5},
         (3, 32, 32), 10, 128, 8),
    Arch("cnn_fmnist", "cnn_fmnist", {}, (1, 28, 28), 10, 128, 16),
    Arch("cnn_yale", "cnn_yale", {"scale": 8}, (1, 192, 168), 38, 64, 16),
    Arch("mlp_fmnist_512x2", "mlp", {"hidden": [512, 512]}, (1, 28, 28), 10, 128, 128),
]  # fmt: skip


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> None:  # fmt: skip
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def measure(arch: Arch, device: torch.device, seconds: float) -> dict[str, Any]:
    torch.manual_seed(0)
    model = MODELS.get(arch.model)(
        input_shape=arch.input_shape, num_classes=arch.num_classes, **arch.params
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = arch.batch if device.type == "cuda" else arch.cpu_batch
    x = torch.rand(batch, *arch.input_shape, device=device)
    y = torch.randint(0, arch.num_classes, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        train_step(model, opt, x, y)  # also the warm-up step
    flops = counter.get_total_flops() / batch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        train_step(model, opt, x, y)
        steps += 1
        sync()
    elapsed = time.perf_counter() - start
    rate = steps * batch / elapsed
    return {
        "arch": arch.name,
        "model": arch.model,
        "model_params": arch.params,
        "input_shape": list(arch.input_shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "steps": steps,
        "seconds": elapsed,
        "examples_per_second": rate,
        "train_flops_per_example": flops,
        "sustained_tflops": rate * flops / 1e12,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per model")
    parser.add_argument("--only", nargs="*", default=None, help="architecture names")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = torch.device(args.device)
    before = machine_info()
    archs = [a for a in ARCHS if args.only is None or a.name in args.only]
    rows = [measure(arch, device, args.seconds) for arch in archs]
    after = machine_info()
    print(
        markdown_table(
            ["architecture", "parameters", "batch", "examples/s", "GFLOP/example", "TFLOP/s"],
            [
                [
                    r["arch"],
                    f"{r['parameters']:,}",
                    r["batch"],
                    f"{r['examples_per_second']:.1f}",
                    f"{r['train_flops_per_example'] / 1e9:.3f}",
                    f"{r['sustained_tflops']:.3f}",
                ]
                for r in rows
            ],
        )
    )
    name = f"throughput_{device.type}"
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    write_result(
        name,
        {"benchmark": name, "device": str(device), "gpu": gpu, "archs": rows,
         "machine": after, "load_note": load_note(before, after)},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
