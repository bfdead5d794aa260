"""The training step of the CLI example: train ``digits_net.Net`` on 300 of scikit-learn's
digits with a plain PyTorch loop and write what ``privlab audit`` reads, into FOLDER:

- ``weights.safetensors``: the trained weights;
- ``members.npz`` (the 300 training digits), ``nonmembers.npz`` (300 held out) and
  ``population.npz`` (the rest: the attacker's own data), each with arrays ``x`` and ``y``;
- ``recipe.yaml``: how the model was trained (for ``privlab audit --train``).

    .venv/bin/python examples/train_digits.py runs/digits [--epochs 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml
from digits_net import Net  # this file's folder is on sys.path when run as a script
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the CLI example's model.")
    parser.add_argument("folder", type=Path, help="where to write weights, data and recipe")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    recipe = {"epochs": args.epochs, "lr": 0.003, "batch_size": 32, "regime": "natural"}

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    parts = {"members": order[:300], "nonmembers": order[300:600], "population": order[600:]}

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    xm, ym = torch.from_numpy(x[parts["members"]]), torch.from_numpy(y[parts["members"]])
    for _ in range(recipe["epochs"]):
        for batch in torch.randperm(len(ym)).split(recipe["batch_size"]):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xm[batch]), ym[batch]).backward()
            opt.step()

    args.folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, args.folder / "weights.safetensors")
    for name, idx in parts.items():
        np.savez(args.folder / f"{name}.npz", x=x[idx], y=y[idx])
    (args.folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with torch.no_grad():
        train_acc = (model(xm).argmax(1) == ym).float().mean().item()
    print(f"wrote {args.folder}: weights, data and recipe (train accuracy {train_acc:.1%})")


if __name__ == "__main__":
    main()
