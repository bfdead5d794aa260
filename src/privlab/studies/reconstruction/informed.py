"""The informed adversary of Balle, Cherubin & Hayes in a ``kind: reconstruction`` run.

Studies, each a unit cached in ``state/``: closed-form exact recovery from L2-regularised
softmax regression; RecoNN on a small MLP with and without the initialisation (nearest-
neighbour-oracle success); DP-SGD heads at several ε against the ReRo bound (Theorem 2 over
DP-SGD's RDP curve, and κ·e^ε + δ for (ε, δ)-DP), plus the bound over a range of ε for the plot.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import torch

from privlab import __version__
from privlab.attacks.reconstruction.closed_form import softmax_regression, train_to_optimum
from privlab.attacks.reconstruction.informed import (
    RecoNNAttack,
    informed_shadows,
    informed_success,
)
from privlab.data.bundle import Split
from privlab.metrics.bounds import dp_epsilon_gamma, dp_sgd_rero_curve, rero_gamma_dp
from privlab.metrics.membership import clopper_pearson
from privlab.metrics.reconstruction import to_symmetric
from privlab.registry import ATTACKS, DATASETS
from privlab.report.image_codec import image_hex
from privlab.run.progress import Progress, step
from privlab.run.store import StateDir
from privlab.studies.reconstruction.config import InformedAdversaryConfig
from privlab.training.heads import HeadDP, HeadSpec


def _informed_data(cfg: InformedAdversaryConfig, seed: int) -> dict[str, Split]:
    bundle = DATASETS.build(cfg.dataset, seed=seed)
    pool = Split(
        torch.cat([bundle.nonmembers.x, bundle.population.x]),
        torch.cat([bundle.nonmembers.y, bundle.population.y]),
    )
    if cfg.shadows + cfg.victims > len(pool):
        raise ValueError(
            f"informed_adversary: shadows + victims = {cfg.shadows + cfg.victims} exceed the "
            f"{len(pool)} prior images of {cfg.dataset}"
        )
    if cfg.fixed > len(bundle.members):
        raise ValueError(f"informed_adversary.fixed: {cfg.fixed} > {len(bundle.members)} members")
    return {
        "fixed": bundle.members.subset(np.arange(cfg.fixed)),
        "pool": pool,
        "shadow_targets": pool.subset(np.arange(cfg.shadows)),
        "victims": pool.subset(np.arange(len(pool) - cfg.victims, len(pool))),
    }


def _reconnn_study(
    cfg: InformedAdversaryConfig,
    data: dict[str, Split],
    spec: HeadSpec,
    *,
    known_init: bool,
    seed: int,
    dp: HeadDP | None = None,
) -> dict[str, Any]:
    start = time.perf_counter()
    theta = informed_shadows(
        spec, data["fixed"], data["shadow_targets"], known_init=known_init, init_seed=seed,
        seed=seed + 1, dp=dp,
    )  # fmt: skip
    released = informed_shadows(
        spec, data["fixed"], data["victims"], known_init=known_init, init_seed=seed,
        seed=seed + 2, dp=dp,
    )  # fmt: skip
    attack: RecoNNAttack = ATTACKS.build("reconnn", **cfg.reconnn.model_dump())
    reconnn = attack.fit(theta, to_symmetric(data["shadow_targets"].x), seed=seed)
    recon = reconnn(released)  # the released models' weights, flattened as the shadows'
    truth = to_symmetric(data["victims"].x)
    out: dict[str, Any] = dict(informed_success(recon, truth, to_symmetric(data["pool"].x)))
    out["seconds"] = time.perf_counter() - start
    out["examples"] = [
        {"image": image_hex(recon[i], (-1.0, 1.0)), "nearest": image_hex(truth[i], (-1.0, 1.0))}
        for i in range(min(8, len(recon)))
    ]
    return out


def _closed_form_study(cfg: InformedAdversaryConfig, seed: int) -> dict[str, Any]:
    from privlab.threat_model import Access, Target, TargetInfo

    assert cfg.closed_form is not None
    cf = cfg.closed_form
    bundle = DATASETS.build(cfg.dataset, seed=seed)
    fixed = bundle.members.subset(np.arange(cf.fixed))
    attack = ATTACKS.build("closed_form_softmax", l2=cf.l2)
    mses, labels_ok = [], []
    for t in range(cf.targets):
        z = bundle.nonmembers.subset(np.array([t]))
        data = Split(torch.cat([fixed.x, z.x]), torch.cat([fixed.y, z.y]))
        torch.manual_seed(seed + t)
        model = train_to_optimum(
            softmax_regression(bundle.input_shape, bundle.num_classes), data, l2=cf.l2
        )
        info = TargetInfo("softmax", bundle.num_classes, bundle.input_shape)
        recon = attack.reconstruct(Target(model, info, Access.WEIGHTS), fixed)
        mses.append(float((recon.images - z.x).pow(2).mean()))
        labels_ok.append(bool(recon.labels.tolist() == z.y.tolist()))
    return {
        "targets": cf.targets,
        "mse_max": max(mses),
        "mse_median": float(np.median(mses)),
        "exact": float(np.mean([m < 1e-6 for m in mses])),
        "labels_correct": float(np.mean(labels_ok)),
    }


def run_informed_adversary(
    cfg: InformedAdversaryConfig, seed: int, state: StateDir, progress: Progress
) -> dict[str, Any]:
    data = _informed_data(cfg, seed)
    base = {
        "unit": "informed",
        "version": __version__,
        "seed": seed,
        "config": cfg.model_dump(mode="json"),
    }
    out: dict[str, Any] = {
        "dataset": cfg.dataset,
        "fixed": cfg.fixed,
        "prior": len(data["pool"]),
        "kappa": 1 / len(data["pool"]),  # NN oracle: a fixed guess names one prior image
        "sha256": {k: v.sha256() for k, v in data.items()},
    }
    if cfg.closed_form is not None:
        with step(progress, "informed: closed form"):
            out["closed_form"] = state.get_or_run(
                "informed-closed-form",
                base | {"study": "closed_form"},
                partial(_closed_form_study, cfg, seed),
            )
    spec = cfg.head
    out["reconnn"] = []
    for known in cfg.known_init:
        with step(progress, f"informed: RecoNN, known init {known}"):
            res = state.get_or_run(
                f"informed-known-{known}",
                base | {"study": "reconnn", "known_init": known},
                partial(_reconnn_study, cfg, data, spec, known_init=known, seed=seed),
            )
        out["reconnn"].append({"known_init": known, **res})
    n = cfg.fixed + 1
    dp_spec = cfg.dp_head or cfg.head  # by default the RecoNN arm's own MLP
    out["dp"] = _dp_rows(cfg, data, dp_spec, base, seed, state, progress, out["kappa"])
    epochs = dp_spec.epochs_for(n)
    if cfg.epsilons:
        out["bound_curve"] = _bound_curve(out["kappa"], n, epochs, cfg.epsilons)
    return out


def _dp_rows(
    cfg: InformedAdversaryConfig,
    data: dict[str, Split],
    dp_spec: HeadSpec,
    base: dict[str, Any],
    seed: int,
    state: StateDir,
    progress: Progress,
    kappa: float,
) -> list[dict[str, Any]]:
    """RecoNN on DP-SGD models (the non-private reference first), each success with its
    interval against the ReRo bound γ."""
    n = cfg.fixed + 1
    epochs = dp_spec.epochs_for(n)
    rows = []
    for eps in [None, *cfg.epsilons] if cfg.epsilons else []:
        dp = (
            None
            if eps is None
            else HeadDP(clip=cfg.dp_clip, noise_multiplier=HeadDP.noise_for(eps, n, epochs))
        )
        with step(progress, f"informed: DP-SGD ε={eps}"):
            res = state.get_or_run(
                f"informed-dp-{eps}",
                base | {"study": "dp", "epsilon": eps},
                partial(_reconnn_study, cfg, data, dp_spec, known_init=True, seed=seed, dp=dp),
            )
        row: dict[str, Any] = {"epsilon": eps, "head": dp_spec.model_dump(), **res}
        row |= _success_interval(row["nn_oracle_success"], cfg.victims)
        if dp is not None:
            row["epsilon_spent"], row["gamma"] = dp_epsilon_gamma(dp, n, epochs, kappa)
            row["noise_multiplier"] = dp.noise_multiplier
            row["gamma_dp"] = _gamma_eps_delta(row["epsilon_spent"], HeadDP.delta(n), kappa)
            row |= bound_check(row["nn_oracle_success"], cfg.victims, row["gamma"])
        rows.append(row)
    return rows


def _success_interval(rate: float, victims: int) -> dict[str, Any]:
    """The NN-oracle success over ``victims`` released models with its Clopper–Pearson CI."""
    k = round(rate * victims)
    return {"victims": victims, "successes": k, "success_ci": list(clopper_pearson(k, victims))}


def bound_check(rate: float, victims: int, gamma: float) -> dict[str, Any]:
    """ "Empirical success ≤ ReRo bound γ" as a test that can fail: ``violated`` when the
    success's 95 % lower confidence bound exceeds γ; ``detectable_rate``: the smallest success
    rate these victims could show to be above γ (1 or more: the comparison cannot fail)."""
    k = round(rate * victims)
    detectable = next(
        (j / victims for j in range(victims + 1) if clopper_pearson(j, victims)[0] > gamma), None
    )
    return {
        "bound_violated": clopper_pearson(k, victims)[0] > gamma,
        "detectable_rate": detectable,
    }


def _gamma_eps_delta(eps: float, delta: float, kappa: float) -> float:
    """ReRo for (ε, δ)-DP: Corollary 3's κ·e^ε plus δ (the δ-mass DP does not control)."""
    return min(1.0, rero_gamma_dp(eps, kappa) + delta)


def _bound_curve(
    kappa: float, n: int, epochs: int, epsilons: list[float], points: int = 12
) -> dict[str, list[float]]:
    """γ over a range of ε around the studied ones: noise multipliers log-spaced from 2/3 of
    that of max ε to 3/2 of that of min ε (calibrations memoised from the runs), each giving ε
    and γ from one RDP curve; and the (ε, δ)-DP bound."""
    hi = 1.5 * HeadDP.noise_for(min(epsilons), n, epochs)
    lo = HeadDP.noise_for(max(epsilons), n, epochs) / 1.5
    curve = dp_sgd_rero_curve(
        kappa,
        sample_rate=HeadDP.sample_rate(n),
        steps=epochs * HeadDP.batches_per_epoch(n),
        delta=HeadDP.delta(n),
        noise_multipliers=np.geomspace(lo, hi, points).tolist(),
    )
    curve["gamma_dp"] = [_gamma_eps_delta(e, HeadDP.delta(n), kappa) for e in curve["epsilon"]]
    return curve
