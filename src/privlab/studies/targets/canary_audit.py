"""DP auditing with canaries: does a target's training recipe behave like its claimed ε?

``m`` canaries are drawn from the population and made easy to recognise (``mislabelled``: a
wrong label; ``ood``: uniform noise with a random label, out of the data's distribution).
Each is inserted into training independently with probability ½, ``runs`` times; the target's
recipe (architecture, regime, optimiser, seed stream) trains one model per run on the
target's members plus that run's inserted canaries, as one vectorised ensemble through the
reference-model trainer (cached, on the run's backend). The black-box attacker scores every
canary by the model's logit-scaled confidence in the canary's label and guesses "in" for its
highest scores and "out" for its lowest; the number of correct guesses gives an ε lower bound
at the stated confidence (Steinke, Nasr & Jagielski 2023, valid for one run and for the m·runs
independent inclusions of several; a single canary over many runs: Jagielski et al. 2020's
threshold bound). The claimed ε is the canary models' own accountant ε (the recipe as
trained here: members plus canaries), so a lower bound above it means the implementation
does not deliver its promise.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split
from privlab.metrics import dp_audit, dp_audit_one_run
from privlab.run.backend import Backend
from privlab.run.files import stable_hash
from privlab.run.model_cache import build_model, build_regime
from privlab.run.progress import Progress
from privlab.studies.targets.config import CanaryAuditConfig, ReferenceModelsConfig
from privlab.studies.targets.reference_models import ensemble_by_recipe
from privlab.threat_model import Access, Target, TargetInfo
from privlab.training.dp_canaries import (
    audit_dp_sgd,
    audit_dp_training,
    claimed_epsilon,
    many_run_result,
)
from privlab.training.regimes.dp_sgd import DPSGD


def draw_canaries(cfg: CanaryAuditConfig, bundle: DataBundle, seed: int) -> Split:
    """``cfg.canaries`` canaries from the population (never the target's members or
    non-members), made recognisable as ``cfg.kind`` says."""
    rng = np.random.default_rng(seed + 70_000)
    pool = bundle.population
    if cfg.canaries > len(pool):
        raise ValueError(
            f"dp_audit.canaries: {cfg.canaries} canaries need as many population examples; "
            f"the data has {len(pool)}"
        )
    chosen = pool.subset(rng.choice(len(pool), cfg.canaries, replace=False))
    classes = bundle.num_classes
    if cfg.kind == "mislabelled":
        shift = torch.as_tensor(rng.integers(1, classes, cfg.canaries))
        return Split(chosen.x, (chosen.y + shift) % classes)
    low, high = bundle.value_range
    noise = torch.as_tensor(rng.random(tuple(chosen.x.shape)), dtype=chosen.x.dtype)
    labels = torch.as_tensor(rng.integers(0, classes, cfg.canaries))
    return Split(low + (high - low) * noise, labels)


def inclusion_masks(cfg: CanaryAuditConfig, members: int, seed: int) -> np.ndarray:
    """runs × (members + canaries): every member in every run, each canary with prob. ½."""
    rng = np.random.default_rng(seed + 71_000)
    canaries = rng.random((cfg.runs, cfg.canaries)) < 0.5
    return np.concatenate([np.ones((cfg.runs, members), dtype=bool), canaries], axis=1)


def canary_scores(models: Any, info: TargetInfo, canaries: Split, device: torch.device
                  ) -> np.ndarray:  # fmt: skip
    """runs × m: each run's logit-scaled confidence log p/(1 − p) in each canary's label."""
    rows = []
    for model in models:
        probs = Target(model.eval(), info, Access.PROBS, device=device).predict_proba(canaries.x)
        p = probs[torch.arange(len(canaries.y)), canaries.y.to(probs.device)].clamp(1e-300, 1.0)
        rows.append((p.log() - torch.log1p(-p).clamp(min=-1e300)).cpu().numpy())
    return np.nan_to_num(np.stack(rows), posinf=1e300, neginf=-1e300)


def audit_bound(cfg: CanaryAuditConfig, scores: np.ndarray, included: np.ndarray,
                delta: float) -> dict[str, Any]:  # fmt: skip
    """The ε lower bound from the canaries' scores and inclusions (runs × m each)."""
    if cfg.canaries == 1 and cfg.runs > 1:
        many = dp_audit.many_run_epsilon_lower_bound(
            included[:, 0], scores[:, 0], delta=delta, confidence=cfg.confidence
        )
        return many_run_result("many-run threshold (Jagielski et al. 2020)", many)
    k = cfg.guesses_for(scores.size)
    one = dp_audit_one_run.one_run_epsilon_lower_bound(
        included.ravel(), scores.ravel(), k_pos=k, k_neg=k, delta=delta,
        confidence=cfg.confidence, seed=cfg.canaries,
    )  # fmt: skip
    bound = one.as_dict()
    bound["inclusions"] = bound.pop("canaries")  # m·runs coin flips, guessed or not
    return {"method": "one-run (Steinke, Nasr & Jagielski 2023)", **bound}


def white_box_audit(
    cfg: CanaryAuditConfig, privacy: dict[str, Any], seed: int
) -> dict[str, Any] | None:
    """The gradient-canary audit of a DP-SGD target's step at its own settings (None: the
    target is not DP-SGD, or the audit is off)."""
    if cfg.gradient_runs == 0 or privacy.get("mechanism") != "dp_sgd":
        return None
    return audit_dp_sgd(privacy, runs=cfg.gradient_runs, confidence=cfg.confidence, seed=seed)


def in_training_audit(
    cfg: CanaryAuditConfig,
    *,
    bundle: DataBundle,
    model_cfg: Component,
    regime_cfg: Component,
    train_cfg: TrainConfig,
    seed: int,
    device: torch.device,
) -> dict[str, Any] | None:
    """The gradient canary inside the recipe's own DP-SGD training (None: off, or not a
    DP-SGD recipe)."""
    regime = build_regime(regime_cfg, bundle)
    if cfg.training_runs == 0 or not isinstance(regime, DPSGD):
        return None
    return audit_dp_training(
        partial(build_model, model_cfg, bundle, regime=regime), bundle.members, regime,
        train_cfg, runs=cfg.training_runs, confidence=cfg.confidence, seed=seed, device=device,
    )  # fmt: skip


def run_canary_audit(
    cfg: CanaryAuditConfig,
    *,
    bundle: DataBundle,
    info: TargetInfo,
    model_cfg: Component,
    regime_cfg: Component,
    train_cfg: TrainConfig,
    seed: int,
    device: torch.device,
    cache_dir: Any,
    progress: Progress,
    label: str,
    backend: Backend,
) -> dict[str, Any]:
    """Train the canary runs of one target (or load them) and bound its ε from them."""
    canaries = draw_canaries(cfg, bundle, seed)
    members = bundle.members
    pool = Split(torch.cat([members.x, canaries.x]), torch.cat([members.y, canaries.y]))
    masks = inclusion_masks(cfg, len(members), seed)
    seeds = [seed * 1_000 + 80_000 + r for r in range(cfg.runs)]
    recipe = {"role": "canary-audit", "seeds": seeds, "pool_sha256": pool.sha256(),
              "masks": stable_hash(masks.tobytes().hex()), "model": model_cfg.model_dump(),
              "train": train_cfg.recipe()}  # fmt: skip
    runs_cfg = ReferenceModelsConfig.model_construct(
        count=cfg.runs, tasks=cfg.tasks, chunk_size=None, gpus=cfg.gpus
    )
    made = ensemble_by_recipe(
        runs_cfg, recipe, pool, masks, model_cfg, regime_cfg, train_cfg, bundle,
        device=device, cache_dir=cache_dir, progress=progress,
        label=f"{label} canary audit ({cfg.runs} run{'s' * (cfg.runs > 1)})", backend=backend,
    )  # fmt: skip
    scores = canary_scores(made.models, info, canaries, device)
    included = masks[:, len(members) :]
    claimed, claimed_delta = claimed_epsilon(made.summaries)
    delta = claimed_delta if claimed_delta is not None else cfg.delta
    bound = audit_bound(cfg, scores, included, delta)
    eps_lb = bound["epsilon"]
    return {
        "canaries": cfg.canaries,
        "kind": cfg.kind,
        "runs": cfg.runs,
        "claimed_epsilon": claimed,
        "delta": delta,
        "gap": None if claimed is None else claimed - eps_lb,
        "violated": claimed is not None and eps_lb > claimed,
        "train_seconds": made.seconds,
        "cached": made.cached,
        **bound,
    }
