"""The weak adversary end to end on the transfer setting: shadow heads → reconstructor → TPR/FPR.

Requirements (reconstruction issue): "Reconstructor training for the default config in at most
30 minutes on 2 cores (the paper's residual generator), with a smaller reconstructor option that
trains in at most 5 minutes". Also a first Table 1 analogue (TPR*, FPR*, TPR@FPR = 0.01).

Setting: :func:`privlab.studies.reconstruction.transfer.transfer_setting` (frozen 256-d features
of 2,500 MNIST images); the transfer images are split 2,000 / 500 into the attacker's training
prior and a disjoint validation prior (Algorithm 1 runs on each). Heads: Table 3 MNIST recipe,
N = 10 (balanced). ``--heads`` training shadows, ``--val-heads`` validation shadows (both
generated, timed apart). Reconstructor: ``--kind mlp`` (θ ⊕ class → 512 → 512 → 28×28) or
``residual`` (the paper's up-sampling generator, width ``--width``), Adam 2e-4, batch 32, Eq. 3
soft-min (α = 100), early stopping on the validation shadows: the registered ``weak_adversary``
attack. τ = mean nearest-neighbour MSE between the validation and training priors (images in
[−1, 1]). FPR: Gaussian null weights (full covariance).
"""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import sys
import tempfile
from pathlib import Path

from _common import Clock, load_note, machine_info, set_threads, write_result

from privlab.attacks.reconstruction.evaluation import evaluate_reconstructor
from privlab.attacks.reconstruction.weak_adversary import (
    WeakAdversary,
    fit_normaliser,
)
from privlab.data.bundle import stratified_split
from privlab.metrics.reconstruction import nn_mse_threshold, to_symmetric
from privlab.run.model_cache import default_cache_dir
from privlab.studies.reconstruction.shadow_heads import (
    ShadowJob,
    generate_shadow_heads,
    shadow_heads,
)
from privlab.studies.reconstruction.transfer import transfer_setting
from privlab.training.heads import HeadSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=100_000)
    parser.add_argument("--val-heads", type=int, default=2_000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--kind", choices=["mlp", "residual"], default="mlp")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(2)
    before = machine_info()
    data = transfer_setting(cache_dir=default_cache_dir())
    labels = data.labels
    train_idx, val_idx = stratified_split(labels.numpy(), [2000, 500], seed=0)
    images = to_symmetric(data.images)
    parts = {
        "train": (data.features[train_idx], labels[train_idx], images[train_idx]),
        "val": (data.features[val_idx], labels[val_idx], images[val_idx]),
    }
    spec = HeadSpec()
    width = args.width or (512 if args.kind == "mlp" else 32)
    attack = WeakAdversary(kind=args.kind, width=width, epochs=args.epochs, eval_every=500)
    with tempfile.TemporaryDirectory(prefix="privlab-weak-") as tmp:
        jobs = {
            name: ShadowJob(
                spec=spec,
                n=args.n,
                count=count,
                seed=i,
                pool_sha256=f"{data.sha256()}:{name}",
            )
            for i, (name, count) in enumerate((("train", args.heads), ("val", args.val_heads)))
        }
        with Clock() as shadows:
            for name, (feats, labs, _) in parts.items():
                generate_shadow_heads(jobs[name], feats, labs, Path(tmp) / name)
        heads = {name: shadow_heads(job, Path(tmp) / name) for name, job in jobs.items()}
        with Clock() as training:  # the shadows' statistics are part of training
            null = fit_normaliser(heads["train"], covariance=True)
            recon = attack.fit(
                heads["train"], heads["val"], parts["train"][2], parts["val"][2], normaliser=null
            )
        tau = nn_mse_threshold(parts["train"][2], parts["val"][2])
        result = evaluate_reconstructor(
            recon, heads["val"], parts["val"][2], parts["val"][1], tau=tau, null=null
        )
    limit = 300.0 if args.kind == "mlp" else 1800.0
    after = machine_info()
    payload = {
        "requirement": f"{args.kind} reconstructor trained in ≤ {limit / 60:.0f} min",
        "heads": args.heads,
        "val_heads": args.val_heads,
        "n": args.n,
        "reconstructor": attack.params(),
        "shadow_seconds": shadows.wall,
        "train_seconds": training.wall,
        "steps": recon.history[-1]["step"] if recon.history else 0,
        "history": recon.history,
        "tau": tau,
        "tpr": result["tpr"],
        "fpr": result["fpr"],
        "tpr_at_fpr_0.01": result["tpr_at_fpr_0.01"],
        "held_out": result["held_out"],
        "prior_draw_tpr": result["prior_draw_tpr"],
        "verdict": "PASS" if training.wall <= limit else "FAIL",
        "load_note": load_note(before, after),
        "machine": before,
    }
    path = write_result(f"weak_adversary_{args.kind}_n{args.n}", payload)
    print(
        f"{args.kind} (width {width}) on {args.heads} shadows: trained in {training.wall:.0f} s "
        f"(limit {limit:.0f}: {payload['verdict']}); shadows {shadows.wall:.0f} s; τ {tau:.4f}: "
        f"TPR {result['tpr']:.3f}, FPR {result['fpr']:.3f}, TPR@FPR=0.01 "
        f"{result['tpr_at_fpr_0.01']:.3f}; held-out FPR {result['held_out']['fpr']:.3f}; "
        f"prior draw {result['prior_draw_tpr']:.3f}; {payload['load_note']}; {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
