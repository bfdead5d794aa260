"""nHSIC as BiDO trains through it: one loss and backward at a batch of 128 on MNIST's shapes.

BiDO (``atat2026_defence_grid*.yaml``) adds nHSIC(X, Z_l) − λ·nHSIC(Y, Z_l) over the hidden
layers to every training step; the grid also measures nHSIC on 384 held-out examples per model.
This times the loss of an MLP 784–256–256's two hidden layers (inputs 784-d, labels one-hot over
40 classes, float64 kernels as BiDO computes them) and its backward, with the Gaussian kernel's
pairwise squared distances as privlab computes them now (one m × m matrix product) and as
before (the m × m × d difference), interleaved, on one thread; and the largest difference
between the two kernels.
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import sys

import torch
import torch.nn.functional as F
from _common import cpu_per_call, load_note, machine_info, markdown_table, set_threads, write_result

from privlab.metrics import hsic


def _differences(a: torch.Tensor) -> torch.Tensor:
    return (a.unsqueeze(1) - a.unsqueeze(0)).pow(2).sum(-1)


def _time_loss(batch: int, repeats: int = 5) -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 784, generator=gen)
    hidden = [torch.rand(batch, 256, generator=gen, requires_grad=True) for _ in range(2)]
    y = F.one_hot(torch.randint(0, 40, (batch,), generator=gen), 40).double()

    def step() -> None:
        loss = sum(
            hsic.hsic_tensor(x, z) - 2 * hsic.hsic_tensor(y, z, kernel_a="linear") for z in hidden
        )
        loss.backward()  # type: ignore[union-attr]

    return cpu_per_call(step, repeats)


def main() -> int:
    set_threads(1)
    before = machine_info()
    now_way = hsic._squared_distances
    times: dict[str, dict[str, float]] = {}
    for batch in (128, 384):
        times[str(batch)] = {}
        for name, way in (("before", _differences), ("now", now_way)):
            hsic._squared_distances = way
            times[str(batch)][name] = _time_loss(batch)
    hsic._squared_distances = now_way
    a = torch.rand(128, 784, dtype=torch.float64)
    diff = float((hsic._squared_distances(a) - _differences(a)).abs().max())
    after = machine_info()
    rows = [[b, t["before"], t["now"], t["before"] / t["now"]] for b, t in times.items()]
    print(markdown_table(["examples", "s before", "s now", "speed-up"], rows))
    payload = {"seconds": times, "max_abs_diff": diff, "load_note": load_note(before, after)}
    path = write_result("hsic", payload | {"machine": before})
    print(f"\nmax |Δ squared distance| {diff:.2g}; {payload['load_note']}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
