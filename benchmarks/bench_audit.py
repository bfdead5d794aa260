"""Speed of ``privlab audit`` on a user's model (issue 14's requirements).

1. Black-box audit (loss, confidence) of 10,000 members and 10,000 non-members of a small CNN
   (28×28 inputs, the user's own ``Net`` in a file, weights as safetensors): at most 20 s on
   2 cores, model loading included. Timed as the whole ``privlab audit`` process (start-up,
   loading, checks, attacks, report). Speed does not depend on what the model learned, so the
   weights are a seeded initialisation and the images seeded noise.
2. LiRA with 16 reference models of the user's small CNN on ``mnist5k`` from ``privlab audit``
   with a recipe (``--lira``): at most 5 minutes on 2 cores in an empty cache; a second audit
   of the same architecture, recipe and data reuses the reference models: under 30 s.

    .venv/bin/python benchmarks/bench_audit.py [--lira]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: F401  (must precede torch)
import numpy as np
import torch
from _common import load_note, machine_info, write_result
from safetensors.torch import save_file

NET = """
from torch import nn


def Net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )
"""
LIMIT_BLACK_BOX_S, LIMIT_LIRA_S, LIMIT_REUSE_S = 20.0, 300.0, 30.0
PRIVLAB = str(Path(sys.executable).parent / "privlab")


def _net(folder: Path) -> torch.nn.Module:
    """The user's Net from its file, as privlab loads it (seeded initialisation)."""
    from privlab.auditing.model_loading import load_user_model

    (folder / "net.py").write_text(NET)
    torch.manual_seed(0)
    return load_user_model(f"{folder / 'net.py'}:Net")


def _save(folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> str:
    path = folder / f"{name}.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return str(path)


def _audit(folder: Path, out: str, extra: list[str], env: dict[str, str]) -> float:
    cmd = [
        PRIVLAB,
        "audit",
        "--model",
        f"{folder / 'net.py'}:Net",
        "--weights",
        str(folder / "w.safetensors"),
        "--members",
        str(folder / "members.npz"),
        "--nonmembers",
        str(folder / "nonmembers.npz"),
        "--out",
        str(folder / out),
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def black_box(folder: Path, env: dict[str, str]) -> dict[str, object]:
    model = _net(folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "w.safetensors")
    rng = np.random.default_rng(0)
    for name in ("members", "nonmembers"):
        _save(folder, name, rng.random((10_000, 1, 28, 28)), rng.integers(0, 10, 10_000))
    wall = _audit(
        folder,
        "bb",
        ["--access", "black-box", "--attacks", "loss_threshold", "--attacks", "confidence"],
        env,
    )
    return {"wall_s": wall, "limit_s": LIMIT_BLACK_BOX_S, "pass": wall <= LIMIT_BLACK_BOX_S}


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """The user's own training loop (plain PyTorch; not timed)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def lira(folder: Path, env: dict[str, str]) -> dict[str, object]:
    from privlab.registry import DATASETS

    bundle = DATASETS.build("mnist5k", seed=0)
    model = _net(folder)
    _train(model, bundle.members.x, bundle.members.y, epochs=10)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "w.safetensors")
    for name in ("members", "nonmembers", "population"):
        split = getattr(bundle, name)
        _save(folder, name, split.x.numpy(), split.y.numpy())
    (folder / "recipe.yaml").write_text("epochs: 10\nbatch_size: 64\nlr: 0.001\n")
    extra = ["--attacks", "lira", "--population", str(folder / "population.npz"),
             "--train", str(folder / "recipe.yaml")]  # fmt: skip
    first = _audit(folder, "lira1", extra, env)
    second = _audit(folder, "lira2", extra, env)
    report = json.loads((folder / "lira1" / "report.json").read_text())
    (target,) = report["studies"]["targets"]["runs"][0]["targets"]
    metrics = target["attacks"][0]["metrics"]
    return {
        "first_wall_s": first,
        "second_wall_s": second,
        "members": len(bundle.members),
        "reference_models": (target.get("reference_models") or {}).get("count"),
        "auc": metrics["auc"],
        "tpr_at_1pct_fpr": metrics["tpr_at_fpr"].get("0.01"),
        "pass": first <= LIMIT_LIRA_S and second <= LIMIT_REUSE_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lira", action="store_true", help="also time LiRA (minutes)")
    args = parser.parse_args(argv)
    before = machine_info()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="privlab-bench-audit-") as tmp:
        env = os.environ | {"PRIVLAB_CACHE": str(Path(tmp) / "cache")}
        (Path(tmp) / "bb").mkdir()
        results["black_box"] = black_box(Path(tmp) / "bb", env)
        print(f"black-box audit, 10k + 10k, small CNN: {results['black_box']}")
        if args.lira:
            (Path(tmp) / "lira").mkdir()
            results["lira"] = lira(Path(tmp) / "lira", env)
            print(f"LiRA, 16 reference models, mnist5k: {results['lira']}")
    payload = results | {"machine": before, "load": load_note(before, machine_info())}
    print(f"written to {write_result('audit', payload)}")
    return 0 if all(r.get("pass") for r in results.values() if isinstance(r, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
