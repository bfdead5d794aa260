"""Audit a model of tabular data you trained yourself, from Python.

A plain PyTorch script: the UCI Adult census data shipped in privlab (one-hot and standardised,
no download), a small MLP trained on 2,000 people with an ordinary training loop until it
overfits a little, then one call to ``privlab.audit`` (black-box: the model's answers only).
It prints what leaks, with its reading against the documented levels (docs/levels.md), and
the members the strongest attack singles out, as named rows of attributes.

    .venv/bin/python examples/audit_tabular.py                  # report in a temporary folder
    .venv/bin/python examples/audit_tabular.py runs/audit_tabular
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn

import privlab

MEMBERS, NONMEMBERS = 2_000, 2_000


def train(x: torch.Tensor, y: torch.Tensor, epochs: int = 30) -> nn.Module:
    """An ordinary PyTorch training loop (Adam, cross-entropy, shuffled mini-batches)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", help="report folder (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="privlab-audit-tabular-")

    start = time.perf_counter()
    # privlab's data API: 2,000 members (the training set) and 2,000 people held out
    adult = privlab.DATASETS.build("adult", seed=0, members=MEMBERS, nonmembers=NONMEMBERS)
    members, nonmembers = adult.members, adult.nonmembers
    model = train(members.x, members.y)
    print(
        f"trained on {len(members)} people: train accuracy "
        f"{accuracy(model, members.x, members.y):.1%}, "
        f"test {accuracy(model, nonmembers.x, nonmembers.y):.1%}"
    )

    result = privlab.audit(
        model,
        members=(members.x, members.y),
        nonmembers=(nonmembers.x, nonmembers.y),
        access="black-box",
        feature_names=adult.feature_names,  # the report's most exposed rows, named
        out=out,
    )
    print("\n".join(result.summary))
    for line in result.skipped:
        print(f"skipped {line}")

    print("most exposed members (numeric attributes standardised, as the model saw them):")
    for record in result.most_exposed(5):
        features = record["features"]  # one-hot groups decoded: workclass Private, …
        print(
            f"  #{record['index']:>4}  {adult.class_names[record['label']]:>5}  "
            f"{record['attack']} score {record['score']:.3g}  caught at FPR {record['fpr']:.3g}"
        )
        print("         " + ", ".join(f"{name} {value}" for name, value in features.items()))
    html = result.save(out)
    print(f"report: {html} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
