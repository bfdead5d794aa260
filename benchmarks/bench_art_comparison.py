"""privlab's membership attacks side by side with IBM ART's on the same trained targets.

Targets: the privlab demo recipe — ``mlp`` hidden (512, 512), 100 epochs, batch 64, Adam 1e-3
on ``digits`` members (seed 0) — trained naturally and with ``pgd_at`` (ε = 0.1, 10 steps).

Protocol (ART's standard one): members and non-members are each split in half (class-
stratified, seed 0). The *fit* halves train ART's ``MembershipInferenceBlackBox``
(``attack.fit(x_members, y, x_nonmembers, y)``) and fit privlab's honest threshold; every
number is computed on the *eval* halves. ``MembershipInferenceBlackBoxRuleBased`` needs no
training (member ⇔ correctly classified).

Accuracies are balanced (Song et al. Eq. 15). Three kinds appear and are labelled:

* ``own rule``: ART's predictions at its own decision rule (honest: learnt on the fit halves);
* ``fitted thr``: privlab's score thresholded at ``best_threshold`` of the fit halves (honest);
* ``oracle thr``: the best threshold on the eval halves themselves (worst case, what Song et
  al. and privlab's ``accuracy`` report); for ART black-box it is applied to its
  P(member) output.

Usage: .venv/bin/python benchmarks/bench_art_comparison.py [--quick]
(needs ``adversarial-robustness-toolbox``: ``.venv/bin/pip install -e '.[bench]'``)
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import copy
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import load_note, machine_info, markdown_table, set_threads, write_result
from torch import nn

from privlab.data.bundle import Split, stratified_split
from privlab.metrics.membership import (
    accuracy_at_threshold,
    auc,
    best_threshold,
    membership_metrics,
)
from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES
from privlab.threat_model import Access, Target, TargetInfo
from privlab.training.loop import TrainSpec, train

NAME = "art_comparison"
REQUIREMENT = (
    "informational: privlab vs IBM ART membership inference on identical targets "
    "(no pass/fail bound; checks that both run and that privlab's honest numbers are "
    "comparable with ART's)"
)
EPS = 0.1
PRIVLAB_ATTACKS = [
    ("loss_threshold", "loss", {}),
    ("confidence", "I_B", {}),
    ("adversarial_confidence", "I_A", {"steps": 10}),
]


def halves(split: Split, seed: int) -> tuple[Split, Split]:
    n = len(split)
    a, b = stratified_split(split.y.numpy(), [n // 2, n - n // 2], seed=seed)
    return split.subset(a), split.subset(b)


def train_target(bundle: Any, regime_name: str, epochs: int) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = MODELS.build(
        "mlp", input_shape=bundle.input_shape, num_classes=bundle.num_classes, hidden=(512, 512)
    )
    params = {"eps": EPS, "steps": 10} if regime_name == "pgd_at" else {}
    regime = REGIMES.build(regime_name, **params)
    spec = TrainSpec(epochs=epochs, batch_size=64, lr=1e-3, optimizer="adam")
    result = train(model, bundle.members, regime, spec, seed=0)
    return result.model.eval(), result.seconds


def accuracy(model: nn.Module, split: Split) -> float:
    with torch.no_grad():
        return float((model(split.x).argmax(1) == split.y).float().mean())


def labels(n_in: int, n_out: int) -> np.ndarray:
    return np.r_[np.ones(n_in, dtype=bool), np.zeros(n_out, dtype=bool)]


def run_privlab(
    model: nn.Module, bundle: Any, fit: tuple[Split, Split], ev: tuple[Split, Split]
) -> list[dict[str, Any]]:
    info = TargetInfo(
        name="mlp",
        num_classes=bundle.num_classes,
        input_shape=bundle.input_shape,
        value_range=bundle.value_range,
        eps=EPS,
    )
    target = Target(copy.deepcopy(model), info, Access.PROBS | Access.INPUT_GRADIENTS)
    rows = []
    for name, label, params in PRIVLAB_ATTACKS:
        attack = ATTACKS.build(name, **params)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        fit_scores = np.r_[
            attack.score(target, fit[0].x, fit[0].y), attack.score(target, fit[1].x, fit[1].y)
        ]
        thr = best_threshold(labels(len(fit[0]), len(fit[1])), fit_scores).threshold
        t1 = time.perf_counter()
        ev_scores = np.r_[
            attack.score(target, ev[0].x, ev[0].y), attack.score(target, ev[1].x, ev[1].y)
        ]
        t2 = time.perf_counter()
        is_member = labels(len(ev[0]), len(ev[1]))
        m = membership_metrics(is_member, ev_scores)
        rows.append(
            {
                "impl": "privlab",
                "attack": f"{label} ({name})",
                "honest_acc": accuracy_at_threshold(is_member, ev_scores, thr),
                "honest_rule": "threshold fitted on fit halves",
                "oracle_acc": m["accuracy"],
                "auc": m["auc"],
                "fit_s": t1 - t0,
                "eval_s": t2 - t1,
            }
        )
    return rows


def run_art(
    model: nn.Module,
    bundle: Any,
    fit: tuple[Split, Split],
    ev: tuple[Split, Split],
    model_types: list[str],
) -> list[dict[str, Any]]:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(
        model=copy.deepcopy(model),
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(bundle.input_shape),
        nb_classes=bundle.num_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )

    def np_(s: Split) -> tuple[np.ndarray, np.ndarray]:
        return s.x.numpy().astype(np.float32), s.y.numpy()

    (xf_in, yf_in), (xf_out, yf_out) = np_(fit[0]), np_(fit[1])
    (xe_in, ye_in), (xe_out, ye_out) = np_(ev[0]), np_(ev[1])
    is_member = labels(len(ye_in), len(ye_out))
    rows = []
    for kind in model_types:
        np.random.seed(0)  # sklearn forests draw from the global RandomState
        torch.manual_seed(0)
        attack = MembershipInferenceBlackBox(clf, attack_model_type=kind)
        t0 = time.perf_counter()
        attack.fit(xf_in, yf_in, xf_out, yf_out)
        t1 = time.perf_counter()
        pred = np.r_[
            attack.infer(xe_in, ye_in).ravel(), attack.infer(xe_out, ye_out).ravel()
        ].astype(np.float64)
        t2 = time.perf_counter()
        prob = np.r_[
            attack.infer(xe_in, ye_in, probabilities=True).ravel(),
            attack.infer(xe_out, ye_out, probabilities=True).ravel(),
        ].astype(np.float64)
        rows.append(
            {
                "impl": "ART",
                "attack": f"MembershipInferenceBlackBox ({kind})",
                "honest_acc": accuracy_at_threshold(is_member, pred, 0.5),
                "honest_rule": "ART's own prediction (attack model trained on fit halves)",
                "oracle_acc": best_threshold(is_member, prob).accuracy,
                "auc": auc(is_member, prob),
                "fit_s": t1 - t0,
                "eval_s": t2 - t1,
            }
        )
    attack = MembershipInferenceBlackBoxRuleBased(clf)
    t1 = time.perf_counter()
    pred = np.r_[attack.infer(xe_in, ye_in), attack.infer(xe_out, ye_out)].astype(np.float64)
    t2 = time.perf_counter()
    rows.append(
        {
            "impl": "ART",
            "attack": "MembershipInferenceBlackBoxRuleBased",
            "honest_acc": accuracy_at_threshold(is_member, pred, 0.5),
            "honest_rule": "ART's own rule (member iff correctly classified); no training",
            "oracle_acc": None,  # binary output: the oracle is the same rule
            "auc": None,
            "fit_s": 0.0,
            "eval_s": t2 - t1,
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 training epochs, ART rf only")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--art-models", nargs="+", default=None, help="rf nn gb lr ...")
    args = parser.parse_args(argv)
    epochs = args.epochs or (30 if args.quick else 100)
    art_models = args.art_models or (["rf"] if args.quick else ["rf", "nn"])
    try:
        import art
    except ImportError:
        print("ART is not installed: .venv/bin/pip install adversarial-robustness-toolbox")
        return 2

    set_threads(2)
    before = machine_info()
    bundle = DATASETS.build("digits", seed=0)
    fit_in, ev_in = halves(bundle.members, seed=0)
    fit_out, ev_out = halves(bundle.nonmembers, seed=1)
    print(
        f"digits: members {len(bundle.members)} (fit {len(fit_in)} / eval {len(ev_in)}), "
        f"non-members {len(bundle.nonmembers)} (fit {len(fit_out)} / eval {len(ev_out)}); "
        f"ART {art.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )

    targets: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for regime in ("natural", "pgd_at"):
        model, secs = train_target(bundle, regime, epochs)
        targets[regime] = {
            "train_seconds": secs,
            "train_acc": accuracy(model, bundle.members),
            "test_acc": accuracy(model, bundle.nonmembers),
        }
        print(
            f"\ntarget {regime}: trained {epochs} epochs in {secs:.1f} s, "
            f"train acc {targets[regime]['train_acc']:.3f}, test acc "
            f"{targets[regime]['test_acc']:.3f}"
        )
        for r in run_privlab(model, bundle, (fit_in, fit_out), (ev_in, ev_out)) + run_art(
            model, bundle, (fit_in, fit_out), (ev_in, ev_out), art_models
        ):
            rows.append({"target": regime, **r})
            oracle = "—" if r["oracle_acc"] is None else f"{r['oracle_acc']:.3f}"
            print(
                f"  {r['impl']:7s} {r['attack']:45s} honest {r['honest_acc']:.3f}  oracle {oracle}"
            )
            sys.stdout.flush()

    def f3(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    table = markdown_table(
        [
            "target",
            "impl",
            "attack",
            "acc, honest (own rule / fitted thr)",
            "acc, oracle thr (worst case)",
            "AUC",
            "fit s",
            "eval s",
        ],
        [
            [
                r["target"],
                r["impl"],
                r["attack"],
                f3(r["honest_acc"]),
                f3(r["oracle_acc"]),
                f3(r["auc"]),
                f"{r['fit_s']:.2f}",
                f"{r['eval_s']:.2f}",
            ]
            for r in rows
        ],
    )
    after = machine_info()
    note = load_note(before, after)
    legend = (
        "Balanced accuracy (Eq. 15) on the eval halves. 'honest': ART at its own decision rule "
        "(attack model trained on the fit halves), privlab at a threshold fitted with "
        "best_threshold on the fit halves and applied with accuracy_at_threshold. 'oracle': "
        "threshold chosen on the eval halves themselves (worst case; privlab's reported "
        "'accuracy', and for ART black-box the best threshold on its P(member)). ART's "
        "black-box features are the PyTorchClassifier outputs, i.e. logits (plus the one-hot "
        "label). privlab 'fit s' includes scoring the fit halves; ART 'eval s' is infer() on "
        "both eval halves (labels only)."
    )
    print("\n" + table + "\n\n" + legend + f"\n\n{note}")
    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": "PASS",
            "quick": args.quick,
            "recipe": {
                "dataset": "digits",
                "seed": 0,
                "model": "mlp hidden (512, 512)",
                "epochs": epochs,
                "batch_size": 64,
                "optimizer": "adam",
                "lr": 1e-3,
                "pgd_at": {"eps": EPS, "steps": 10},
            },
            "split": {
                "fit_members": len(fit_in),
                "fit_nonmembers": len(fit_out),
                "eval_members": len(ev_in),
                "eval_nonmembers": len(ev_out),
            },
            "art_version": art.__version__,
            "targets": targets,
            "rows": rows,
            "legend": legend,
            "markdown": table,
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
