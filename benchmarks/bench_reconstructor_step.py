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
alike. Process CPU time on one thread (the queue runs one thread per config). Also reports how
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
)


def _conv_stem_forward(gen: ResidualGenerator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda theta: gen.head(gen.blocks(gen.stem(theta[:, :, None, None])))


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
    ways = {
        "now": _stepper(model, adam(model.parameters(), 4e-4), batch),
        "before": _stepper(
            forward_before, torch.optim.Adam(before_model.parameters(), lr=4e-4), batch
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
    now, before = (statistics.median(times[k]) for k in ("now", "before"))
    return {"seconds_per_step": times, "now": now, "before": before, "max_weight_diff": diff}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
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
    after = machine_info()
    rows = [
        [name, r["before"], r["now"], r["before"] / r["now"], r["max_weight_diff"]]  # type: ignore[operator]
        for name, r in results.items()
    ]
    table = markdown_table(
        ["reconstructor", "s/step before", "s/step now", "speed-up", "max |Δw|"], rows
    )
    payload = {"results": results, "load_note": load_note(before, after), "machine": before}
    path = write_result("reconstructor_step", payload)
    print(f"{table}\n\nCPU seconds per step, median of {args.rounds} rounds of {args.steps}; ")
    print(f"{payload['load_note']}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
