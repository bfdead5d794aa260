"""Audit a model you trained yourself, from Python.

A plain PyTorch script: scikit-learn's handwritten digits (embedded, no download), a small
CNN trained on a few hundred of them with an ordinary training loop, then one call to
``privlab.audit``. With the attacker's own data (``population``) and the training recipe,
privlab also trains reference models of the same architecture for LiRA, RMIA and Shokri.

    .venv/bin/python examples/audit_api.py              # about a minute on 2 cores
    .venv/bin/python examples/audit_api.py --quick      # seconds: no recipe, threshold attacks
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import privlab


class DigitsNet(nn.Module):
    """A small CNN for 8x8 grey images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.head = nn.Sequential(nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def split_digits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """300 members (the training set), 300 non-members, the rest for the attacker."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    parts = {"members": order[:300], "nonmembers": order[300:600], "population": order[600:]}
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def train(x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch_size: int) -> nn.Module:
    """An ordinary PyTorch training loop (Adam, cross-entropy, shuffled mini-batches)."""
    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for batch in torch.randperm(len(yt)).split(batch_size):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/audit_api", help="report folder")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, no recipe")
    args = parser.parse_args()

    start = time.perf_counter()
    data = split_digits()
    # how the model is trained: the same settings are the recipe privlab uses for its
    # reference models (TrainConfig's keys, plus the regime)
    recipe: dict[str, Any] = {"epochs": 5 if args.quick else 40, "lr": 0.003, "batch_size": 32}
    model = train(*data["members"], recipe["epochs"], recipe["lr"], recipe["batch_size"])
    print(
        f"trained on {len(data['members'][1])} members: train accuracy "
        f"{accuracy(model, *data['members']):.1%}, test {accuracy(model, *data['nonmembers']):.1%}"
    )

    result = privlab.audit(
        model,
        members=data["members"],
        nonmembers=data["nonmembers"],
        # without the attacker's data and the recipe, LiRA, RMIA, Shokri and the
        # inference network are skipped (result.skipped says why)
        population=None if args.quick else data["population"],
        recipe=None if args.quick else recipe | {"regime": "natural"},
        access="black-box",
        out=args.out,
    )

    print("\n".join(result.summary))
    for line in result.skipped:
        print(f"skipped {line}")
    print("most exposed members (index into members):")
    for record in result.most_exposed(5):
        print(
            f"  #{record['index']:>3}  label {record['label']}  {record['attack']} score "
            f"{record['score']:.3g}  caught at FPR {record['fpr']:.3g}"
        )
    html = result.save(args.out)
    print(f"report: {html} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
