"""Issue 3 requirement: IBP bounds for a batch of 1,000 inputs through the mnist5k CNN in < 1 s.

Usage: .venv/bin/python benchmarks/bench_ibp_bounds.py   (writes benchmarks/results/ibp_bounds.json)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from privlab.registry import DATASETS, MODELS
from privlab.verify import interval_bounds

LIMIT_S = 1.0


def main() -> int:
    torch.set_num_threads(2)
    x = DATASETS.build("mnist5k").members.x[:1000]
    rows = []
    for name, params in [("cnn_small", {}), ("cnn_fmnist", {"width": 0.125})]:
        torch.manual_seed(0)
        model = MODELS.build(name, input_shape=(1, 28, 28), num_classes=10, **params).eval()
        torch.set_grad_enabled(False)
        interval_bounds(model, x[:10], 0.1)  # warm-up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            interval_bounds(model, x, 0.1)
            times.append(time.perf_counter() - start)
        rows.append(
            {
                "model": name,
                "params": params,
                "best_s": min(times),
                "median_s": sorted(times)[2],
                "pass": min(times) < LIMIT_S,
            }
        )
        print(
            f"{name:12s} {params}: best {min(times):.3f} s, median {sorted(times)[2]:.3f} s "
            f"(limit {LIMIT_S} s) {'PASS' if min(times) < LIMIT_S else 'FAIL'}"
        )
    out = Path(__file__).parent / "results" / "ibp_bounds.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "requirement": "1,000 inputs < 1 s",
                "rows": rows,
                "torch": torch.__version__,
                "cpus": os.cpu_count(),
                "load": os.getloadavg(),
            },
            indent=2,
        )
    )
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
