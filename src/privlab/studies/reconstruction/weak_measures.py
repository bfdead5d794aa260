"""What the weak adversary's report says of a fitted reconstructor beside the hypothesis test
itself: the test's rates and ROC curves (cumulative and Neyman–Pearson, thinned for the
report, with Theorem 1's check), the heads' utility, example reconstructions beside the
nearest training image, and, for DP-SGD heads, ε, a white-box audit of the DP step and the
ReRo bound on the success."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from privlab.attacks.reconstruction.shadow_shards import shard_weights
from privlab.attacks.reconstruction.weak_adversary import Reconstructor
from privlab.metrics.bounds import dp_epsilon_gamma, empirical_kappa
from privlab.metrics.reconstruction import (
    likelihood_ratio_roc,
    pairwise_mse,
    reconstruction_roc,
    theorem1_check,
)
from privlab.report.image_codec import image_hex
from privlab.studies.reconstruction.config import WeakAdversaryConfig
from privlab.studies.reconstruction.shadow_heads import ShadowJob
from privlab.training.dp_canaries import audit_dp_sgd
from privlab.training.heads import HeadDP, HeadSpec, head_logits

ROC_POINTS = 200


def thin(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """At most ROC_POINTS points of a curve (its ends kept), rounded for the report."""
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), ROC_POINTS)).round().astype(int))
    return [round(float(v), 6) for v in x[keep]], [round(float(v), 6) for v in y[keep]]


def head_utility(
    job: ShadowJob,
    shard: dict[str, torch.Tensor],
    feats: torch.Tensor,
    labels: torch.Tensor,
    positives: torch.Tensor | None = None,
) -> dict[str, float]:
    """Test accuracy of (up to 500) validation heads on the attacker's training prior (never in
    their pool). Binary heads (``positives``: each head's positive identity): the rates on the
    positive and the negative class, and their mean (balanced accuracy)."""
    k = min(500, len(shard["indices"]))
    params = {name[6:]: v[:k].float() for name, v in shard.items() if name.startswith("param.")}
    logits = head_logits(job.spec, params, feats.float())
    if positives is None:
        acc = (logits.argmax(2) == labels[None, :]).double().mean(1)
        return {"accuracy": float(acc.mean()), "accuracy_std": float(acc.std())}
    said, truth = logits[..., 0] > 0, labels[None, :] == positives[:k, None]
    tpr = (said & truth).sum(1).double() / truth.sum(1).clamp_min(1)
    tnr = (~said & ~truth).sum(1).double() / (~truth).sum(1).clamp_min(1)
    acc = (tpr + tnr) / 2
    return {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "positive_rate": float(tpr.mean()),
        "negative_rate": float(tnr.mean()),
    }


def examples(
    recon: Reconstructor,
    shard: dict[str, torch.Tensor],
    images: torch.Tensor,
    tau: float,
    count: int,
) -> list[dict[str, Any]]:
    """The first heads' reconstructions beside the nearest training image of their class."""
    out: list[dict[str, Any]] = []
    theta, idx, taught = shard_weights(shard), shard["indices"].long(), shard["labels"].long()
    for k in range(min(count, len(theta))):
        c = recon.targets[k % len(recon.targets)]
        image = recon(theta[k : k + 1], torch.tensor([c]))[0]
        members = idx[k][taught[k] == c]
        mse = pairwise_mse(image[None], images[members])[0]
        best = int(mse.argmin())
        out.append(
            {
                "class": c,
                "mse": float(mse[best]),
                "success": bool(mse[best] <= tau),
                "image": image_hex(image, (-1.0, 1.0)),
                "nearest": image_hex(images[members[best]], (-1.0, 1.0)),
            }
        )
    return out


def roc_block(pos: np.ndarray, neg: np.ndarray) -> dict[str, Any]:
    _, tpr, fpr = reconstruction_roc(pos, neg)
    np_tpr, np_fpr = likelihood_ratio_roc(pos, neg)
    f, t = thin(np.asarray(fpr), np.asarray(tpr))
    nf, nt = thin(np.asarray(np_fpr), np.asarray(np_tpr))
    # Neyman–Pearson on the paper's logit of the min-MSE; Theorem 1: the three ROCs coincide
    return {"fpr": f, "tpr": t, "np_fpr": nf, "np_tpr": nt, "theorem1": theorem1_check(pos, neg)}


def dp_privacy(
    cfg: WeakAdversaryConfig,
    s: dict[str, Any],
    recon: Reconstructor,
    val: ShadowJob,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    tau: float,
) -> dict[str, Any]:
    """DP-SGD heads: ε at δ = N^−1.1 and the ReRo bound on the success (TPR)."""
    spec: HeadSpec = s["spec"]
    dp: HeadDP = s["dp"]
    epochs = spec.epochs_for(s["n"])
    members = s["n"] // val.classes if cfg.task == "balanced" else s["n"] // 10
    # κ of the prior a training image of the class is drawn from (the whole pool for
    # one_vs_rest, where the identity is unknown); the largest over the classes
    pools = (
        [val_images[val_labels == c] for c in recon.targets]
        if cfg.task == "balanced"
        else [val_images]
    )
    kappa = max(empirical_kappa(pool, tau) for pool in pools)
    # one RDP curve gives ε and the ReRo γ for one given training point (Thm 2); TPR*
    # compares with every class member, hence the union bound over them
    eps, gamma = dp_epsilon_gamma(dp, s["n"], epochs, kappa)
    privacy = {
        "epsilon": eps,
        "delta": HeadDP.delta(s["n"]),
        "noise_multiplier": dp.noise_multiplier,
        "clip": dp.clip,
        "accountant": "rdp (opacus)",
    }
    # the heads' DP step audited white-box at the same σ, C, q, steps and δ: its lower bound
    # beside the accountant's ε (a bound above it would mean the DP code is broken)
    steps = epochs * HeadDP.batches_per_epoch(s["n"])
    step = {"max_grad_norm": dp.clip, "sample_rate": HeadDP.sample_rate(s["n"]), "steps": steps}
    return {
        "privacy": privacy,
        "dp_audit": audit_dp_sgd(privacy | step, runs=1_000, seed=s["n"]),
        "bound": {"kappa": kappa, "gamma": gamma, "tpr_bound": min(1.0, members * gamma)},
    }


def hypothesis_results(result: dict[str, Any]) -> dict[str, Any]:
    """The hypothesis test's rates and ROC curves (against null weights and held-out heads)."""
    pos = np.asarray(result["min_mse"]["trained_on"])
    return {
        "tpr": result["tpr"],
        "fpr": result["fpr"],
        "tpr_at_fpr_0.01": result["tpr_at_fpr_0.01"],
        "held_out": result["held_out"],
        "prior_draw_tpr": result["prior_draw_tpr"],
        "roc": roc_block(pos, np.asarray(result["min_mse"]["null"])),
        "roc_held_out": roc_block(pos, np.asarray(result["min_mse"]["held_out"])),
    }
