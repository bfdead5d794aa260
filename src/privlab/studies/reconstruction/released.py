"""Reconstruction of a released model's own members from its weights (an audit of a given
model): Balle et al.'s informed adversary in closed form, when the model is a softmax
regression. The adversary knows every member but the one it attacks and the training
objective; each member it attacks is scored by the nearest-neighbour oracle (the
reconstruction is closer to it than to every other record the attacker could name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from privlab import __version__
from privlab.attacks.reconstruction.closed_form import ClosedFormSoftmax
from privlab.attacks.reconstruction.informed import nn_oracle
from privlab.data.bundle import DataBundle
from privlab.data.from_config import bundle_from_config
from privlab.metrics.membership import clopper_pearson
from privlab.metrics.reconstruction import to_symmetric
from privlab.report.image_codec import image_hex
from privlab.run.model_cache import build_model
from privlab.run.progress import Progress, step
from privlab.run.store import StateDir
from privlab.run.weights import state_sha256
from privlab.studies.reconstruction.config import ReleasedModelConfig
from privlab.studies.reconstruction.released_head import weak_on_released_head
from privlab.threat_model import Access, Target, TargetInfo

#: relative tolerance of the check that the model computes W·x + b
AFFINE_RTOL = 1e-4


def affine_mismatch(target: Target, attack: ClosedFormSoftmax, x: torch.Tensor) -> str:
    """Why the closed form does not apply to ``target`` ('' when its outputs on ``x`` are
    those of its one Linear layer on the flattened input)."""
    try:
        w, b = attack.linear(target)
    except ValueError as err:
        return str(err)
    if w.shape[1] != x[0].numel():
        return f"its weight has {w.shape[1]} inputs, the data {x[0].numel()} features"
    expected = x.flatten(1).double() @ w.T + b
    got = target.logits(x).double().cpu()
    gap = float((got - expected).abs().max())
    if gap > AFFINE_RTOL * (1.0 + float(expected.abs().max())):
        return f"its outputs are not W·x + b of its one Linear layer (differ by {gap:.3g})"
    return ""


def _examples(recon: torch.Tensor, truth: torch.Tensor, hits: torch.Tensor, count: int) -> list:
    """Reconstructions beside the members they attack (images only, in [−1, 1])."""
    if recon.dim() != 4:
        return []
    return [
        {
            "image": image_hex(recon[i].clamp(-1, 1), (-1.0, 1.0)),
            "nearest": image_hex(truth[i], (-1.0, 1.0)),
            "success": bool(hits[i]),
        }
        for i in range(min(count, len(recon)))
    ]


def closed_form_on(
    target: Target, bundle: DataBundle, cfg: ReleasedModelConfig, seed: int
) -> dict[str, Any]:
    """The closed-form attack on up to ``cfg.targets`` members of ``bundle``."""
    attack = ClosedFormSoftmax(l2=cfg.l2, bias_l2=cfg.bias_l2)
    members = bundle.members
    reason = affine_mismatch(target, attack, members.x[:256])
    if reason:
        return {"applicable": False, "reason": f"not a softmax regression: {reason}"}
    rng = np.random.default_rng(seed + 70_000)
    count = min(cfg.targets, len(members))
    rows = torch.as_tensor(np.sort(rng.choice(len(members), count, replace=False)))
    recon = attack.reconstruct_each(target, members, rows)
    vr = bundle.value_range
    pool = torch.cat([p.x for p in (members, bundle.nonmembers, bundle.population) if len(p)])
    truth = to_symmetric(members.x[rows], vr)
    rebuilt = to_symmetric(recon.images, vr)
    mse, hits = nn_oracle(rebuilt, truth, to_symmetric(pool, vr))
    k = int(hits.sum())
    return {
        "applicable": True,
        "attack": attack.params(),
        "members": len(members),
        "targets": count,
        "pool": len(pool),
        "null": 1.0 / len(pool),
        "stationarity": attack.stationarity(target, members),
        "success": k / count,
        "success_ci": list(clopper_pearson(k, count)),
        "labels_correct": float((recon.labels == members.y[rows]).double().mean()),
        "mse_median": float(mse.median()),
        "exact": float((mse < 1e-6).double().mean()),
        "seconds": recon.seconds,
        "examples": _examples(rebuilt, truth, hits, cfg.examples),
    }


def run_released_model(
    cfg: ReleasedModelConfig, seed: int, cache: Path, state: StateDir, progress: Progress
) -> dict[str, Any]:
    """The reconstruction of the released model's members: in closed form and, for a head on
    frozen features, by the weak adversary (each cached in ``state/`` by the weights' and
    data's hashes; the shadow heads in the cache folder)."""
    bundle = bundle_from_config(cfg.data, seed, "reconstruction.released_model.data")
    model = build_model(cfg.model, bundle, seed).eval()
    info = TargetInfo("released model", bundle.num_classes, bundle.input_shape)
    target = Target(model, info, Access.WEIGHTS | Access.LOGITS)
    hashes = {part: getattr(bundle, part).sha256() for part in ("members", "nonmembers")}
    hashes["weights"] = state_sha256(model)
    key = {
        "unit": "released_model",
        "version": __version__,
        "seed": seed,
        "sha256": hashes,
        "config": cfg.model_dump(mode="json"),
    }
    with step(progress, "reconstruction from the released weights: closed form"):
        closed = state.get_or_run(
            "released-closed-form", key, lambda: closed_form_on(target, bundle, cfg, seed)
        )
    out = {"closed_form": closed, "sha256": hashes}
    if cfg.head is not None:
        head = cfg.head

        def weak() -> dict[str, Any]:
            return weak_on_released_head(
                head,
                model,
                bundle,
                seed=seed,
                examples=cfg.examples,
                cache=cache,
                progress=progress,
            )

        with step(progress, "reconstruction from the released weights: weak adversary"):
            out["weak_adversary"] = state.get_or_run("released-weak", key, weak)
    return out
