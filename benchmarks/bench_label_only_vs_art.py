"""privlab's label-only boundary attack against IBM ART's (``LabelOnlyDecisionBoundary``,
Choquette-Choo et al.'s attack on ART's HopSkipJump) on the same target and examples.

The target is ``bench_label_only.py``'s (``mnist5k`` seed 0, ``cnn_small`` (16, 32) fc 100
trained naturally on 1,000 members, 30 epochs); the first ``--n`` members and non-members are
attacked. ART computes its distances as its ``infer`` does (HopSkipJump ``generate``, the L2
distance, 0 where the target misclassifies), at ``max_iter`` 10, ``max_eval`` 500,
``init_eval`` 50 (privlab's iterations, evaluations per gradient estimate and first estimate's
evaluations); both scores are read as AUC and TPR at 1 % FPR. Reported: AUC, seconds and
labels asked per example. ART needs the ``bench`` extra (``pip install -e .[bench]``).

Usage: .venv/bin/python benchmarks/bench_label_only_vs_art.py [--n N]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys
from typing import Any

import numpy as np
import torch
from _common import Clock, load_note, machine_info, markdown_table, set_threads, write_result
from bench_label_only import CountingTarget, train_target

from privlab.data.bundle import Split
from privlab.metrics.membership import membership_metrics
from privlab.registry import ATTACKS, DATASETS
from privlab.threat_model import Access, TargetInfo

NAME = "label_only_vs_art"


def art_distances(model: torch.nn.Module, bundle: Any, split: Split) -> tuple[np.ndarray, int]:
    """ART's boundary distances of ``split`` (as ``LabelOnlyDecisionBoundary.infer``) and the
    labels it asked for."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import PyTorchClassifier

    calls = [0]

    class Counting(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls[0] += len(x)
            return self.inner(x.float())

    low, high = bundle.value_range
    clf = PyTorchClassifier(
        Counting(model).eval(), loss=torch.nn.CrossEntropyLoss(), input_shape=bundle.input_shape,
        nb_classes=bundle.num_classes, clip_values=(low, high),
    )  # fmt: skip
    x, y = split.x.numpy(), split.y.numpy()
    onehot = np.eye(bundle.num_classes)[y]
    hsj = HopSkipJump(clf, targeted=False, max_iter=10, max_eval=500, init_eval=50, verbose=False)
    x_adv = hsj.generate(x=x, y=onehot)
    dist = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
    dist[clf.predict(x).argmax(1) != y] = 0.0
    return dist, calls[0]


def row(label: str, s_in: np.ndarray, s_out: np.ndarray, seconds: float, labels: float) -> dict:
    member = np.r_[np.ones(len(s_in), bool), np.zeros(len(s_out), bool)]
    m = membership_metrics(member, np.r_[s_in, s_out])
    return {"attack": label, "auc": m["auc"], "tpr_at_1%_fpr": m["tpr_at_fpr"]["0.01"],
            "seconds": seconds, "labels_per_example": labels}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="members and non-members attacked")
    args = parser.parse_args(argv)
    set_threads(2)
    before = machine_info()
    bundle = DATASETS.build("mnist5k", seed=0, members=1000, nonmembers=1000)
    model, _ = train_target(bundle, 30)
    members, nonmembers = (
        bundle.members.subset(range(args.n)),
        bundle.nonmembers.subset(range(args.n)),
    )
    info = TargetInfo("cnn_small", bundle.num_classes, bundle.input_shape, bundle.value_range)
    target = CountingTarget(model, info, Access.LABELS)
    attack = ATTACKS.build("boundary_distance")
    with Clock() as ours:
        s_in, s_out = (attack.score(target, s.x, s.y) for s in (members, nonmembers))
    rows = [row("privlab boundary_distance", s_in, s_out, ours.wall, target.queries / 2 / args.n)]
    with Clock() as theirs:
        (a_in, c_in), (a_out, c_out) = (
            art_distances(model, bundle, s) for s in (members, nonmembers)
        )
    rows.append(
        row("ART LabelOnlyDecisionBoundary", a_in, a_out, theirs.wall, (c_in + c_out) / 2 / args.n)
    )
    print(markdown_table(list(rows[0]), [[f"{v:.4g}" if isinstance(v, float) else v
                                          for v in r.values()] for r in rows]))  # fmt: skip
    after = machine_info()
    write_result(NAME, {"n": args.n, "rows": rows, "machine": after,
                        "load_note": load_note(before, after)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
