"""Run a gradient-inversion study (Liu et al. 2025): attacks × defences × client settings → report.

Per seed the federated task (:mod:`privlab.studies.gradient_inversion.task`) is fixed: the
data bundle (the clients' private data are its members, the test set its non-members), the
global model the server sends (its initialisation, or ``pretrain_epochs`` of natural training
on the population) and, per client setting, the ``batches`` client batches attacked (disjoint
draws of B members). Then, for every defence at every strength of its sweep:

* **privacy**: each batch becomes the server's observation under the defence
  (:func:`~privlab.federated.defences.defended_update`, seeded per batch) and every attack
  inverts it; reconstructions are matched one-to-one to the batch (least MSE) and scored by
  PSNR, RMSE, SSIM, label accuracy and the *identification rate* (the fraction whose nearest
  member, among all the clients' data, is the image it was matched with: recognisable);
  the point's "best" values are the strongest attack's (Liu et al. report the best RMSE);
* **utility**: FedAvg training of the task with the defence at every client
  (:func:`~privlab.federated.training.federated_train`); utility loss = final training loss
  minus the undefended run's (the paper's measure), accuracy loss beside it, ε for DP-SGD.
  The undefended run lasts ``utility.rounds`` rounds or, with ``until: converged``, until its
  training loss converges; every other run of the setting lasts as many rounds. Defences
  listed in ``utility.lr_tuning`` first pick their server learning rate on the population;
* **sparsity**: the fraction of the update's entries that are zero before and after the
  defence (pruning's p counts entries that may have been zero already).

Finally the defences of each client setting are compared at equal utility loss
(:func:`~privlab.federated.utility_matching.utility_matched_table`, each defence's curve starting
at the undefended point). Every (point, part) is a unit cached in ``state/``: an interrupted run
resumes. The attacks receive the global model as the server's
:class:`~privlab.threat_model.Target` (weights and parameter gradients,
:func:`~privlab.attacks.gradient_inversion.base.server_target`); their optimisation runs on the
experiment's device (CUDA when present), the clients, FedAvg and the scoring on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from privlab.report.image_codec import image_hex
from privlab.run.backend import Backend, LocalBackend
from privlab.run.progress import Progress, step
from privlab.run.store import StateDir
from privlab.studies.gradient_inversion.config import (
    ClientSetting,
    DefenceSweep,
    GradientInversionConfig,
)
from privlab.studies.gradient_inversion.defence_comparison import matched_comparison
from privlab.studies.gradient_inversion.lr_tuning import candidate_rates, choose_rate
from privlab.studies.gradient_inversion.task import (
    CPU,
    Batches,
    FederatedTask,
    attack_point,
    baselines,
    sparsity_point,
    utility_point,
)


class _Units:
    """The cached units of one client setting: ``unit(prefix, extra, fn)`` runs ``fn`` once
    under the setting's key plus ``extra`` (resumed from ``state/`` afterwards)."""

    def __init__(
        self,
        task: FederatedTask,
        client: ClientSetting,
        state: StateDir,
        backend: Backend | None = None,
    ) -> None:
        self.task, self.client, self.state = task, client, state
        self.backend = backend or LocalBackend(workers=1)
        self.key = task.key() | {"client": client.model_dump(mode="json")}
        self.u = task.cfg.utility
        self.util_cfg = self.u.cache_key() if self.u else None

    def unit(self, prefix: str, extra: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> Any:
        return self.state.get_or_run(f"gi-{self.client.label}-{prefix}", self.key | extra, fn)

    def utility_key(self, defence: str, params: dict[str, Any], rounds: int) -> dict[str, Any]:
        assert self.u is not None
        extra = {"unit": "utility", "defence": defence, "params": params, "utility": self.util_cfg}
        return extra | ({"rounds": rounds} if self.u.until != "rounds" else {})

    def fill(
        self,
        fn: Callable[..., dict[str, Any]],
        units: list[tuple[str, dict[str, Any], Any]],
        batches: Batches,
    ) -> None:
        """The independent ``units`` (prefix, extra key, item) not yet in ``state/``, run on
        the backend as ``fn(item, task=, client=, batches=)``; ``unit`` then reads them."""
        keyed = [
            (f"gi-{self.client.label}-{p}", self.key | extra, item) for p, extra, item in units
        ]
        shared = {"task": self.task, "client": self.client, "batches": batches}
        self.state.fill(self.backend, fn, keyed, shared=shared)

    def _fedavg(
        self,
        defence: str,
        params: dict[str, Any],
        rounds: int,
        server_lr: float | None,
        *,
        tuning: bool = False,
    ) -> Callable[[], dict[str, Any]]:
        """One FedAvg utility run with the defence, to be run (or resumed) as a unit."""
        return partial(
            utility_point, self.task, self.client, defence, params,
            rounds=rounds, server_lr=server_lr, tuning=tuning,
        )  # fmt: skip

    def utility(
        self, defence: str, params: dict[str, Any], label: str, rounds: int
    ) -> dict[str, Any]:
        """FedAvg with the defence for ``rounds`` rounds (the undefended run's), at the tuned
        server rate when ``utility.lr_tuning`` lists the defence (``label``: the unit's name
        prefix)."""
        assert self.u is not None
        extra = self.utility_key(defence, params, rounds)
        tuned = None
        if self.u.lr_tuning is not None and defence in self.u.lr_tuning.defences:
            tuned = self.tune(defence, params, label, rounds)
            extra["server_lr"] = tuned["server_lr"]
        rate = None if tuned is None else tuned["server_lr"]
        run = self._fedavg(defence, params, rounds, rate)
        result: dict[str, Any] = self.unit(f"{label}-utility", extra, run)
        return result if tuned is None else result | {"lr_tuning": tuned}

    def tune(self, defence: str, params: dict[str, Any], label: str, rounds: int) -> dict[str, Any]:
        """The server rate of the least final training loss among the grid's, each a FedAvg
        run of ``rounds`` rounds on the population (never the members: no attacked batch)."""
        assert self.u is not None and self.u.lr_tuning is not None
        base = self.u.server_lr or self.client.lr
        runs = []
        for factor, rate in candidate_rates(base, self.u.lr_tuning.factors):
            extra = {
                "unit": "lr_tuning",
                "defence": defence,
                "params": params,
                "utility": self.util_cfg,
                "rounds": rounds,
                "server_lr": rate,
            }
            run = self._fedavg(defence, params, rounds, rate, tuning=True)
            result = self.unit(f"{label}-tune-x{factor:g}", extra, run)
            runs.append((factor, rate, float(result["final_train_loss"])))
        return choose_rate(runs, base)


def _baseline_utility(units: _Units, progress: Progress) -> tuple[dict[str, Any] | None, float]:
    """FedAvg without a defence and the utility-loss noise floor (the largest gap to the
    extra seeds' runs); (None, 0) without a utility section."""
    task, client, u = units.task, units.client, units.task.cfg.utility
    if u is None:
        return None, 0.0
    with step(progress, f"FedAvg without a defence ({client.label})"):
        base = {"unit": "utility", "defence": "none", "utility": units.util_cfg}
        baseline = units.unit(
            "utility-none", base, partial(utility_point, task, client, "none", {})
        )
        rounds = int(baseline["rounds"])  # the noise seeds train as long (as the defences)
        same = {} if u.until == "rounds" else {"rounds": rounds}
        others = [
            units.unit(
                f"utility-none-seed{k}",
                base | {"seed_offset": k} | same,
                partial(utility_point, task, client, "none", {}, task.seed + k, rounds=rounds),
            )["final_train_loss"]
            for k in range(1, u.noise_seeds + 1)
        ]
    floor = max((abs(v - baseline["final_train_loss"]) for v in others), default=0.0)
    return baseline, floor


def _utility_block(util: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    return {
        "final_train_loss": util["final_train_loss"],
        "final_accuracy": util["final_accuracy"],
        "utility_loss": util["final_train_loss"] - baseline["final_train_loss"],
        "accuracy_loss": baseline["final_accuracy"] - util["final_accuracy"],
        "epsilon": util.get("epsilon"),
        "audited_epsilon": (util.get("dp_audit") or {}).get("epsilon"),
        "delta": util.get("delta"),
        "rounds": util.get("rounds"),
        "server_lr": util.get("server_lr"),
        "lr_tuning": util.get("lr_tuning"),
        "accuracy_curve": util["accuracy"],
        "seconds": util["seconds"],
    }


def _baseline_block(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """The undefended FedAvg run's utility, its length and (until: converged) convergence."""
    if baseline is None:
        return None
    return {
        "final_train_loss": baseline["final_train_loss"],
        "final_accuracy": baseline["final_accuracy"],
        "rounds": baseline.get("rounds"),
        "server_lr": baseline.get("server_lr"),
        "convergence": baseline.get("convergence"),
    }


def _defence_point(
    units: _Units,
    sweep: DefenceSweep,
    point_of: tuple[int, dict[str, Any], str],
    batches: Batches,
    baseline: dict[str, Any] | None,
    progress: Progress,
) -> dict[str, Any]:
    """One defence at one strength (``point_of``: rank, params, label): attacks, then FedAvg."""
    cfg, client = units.task.cfg, units.client
    rank, params, label = point_of
    attack_key = _attack_key(cfg, sweep.name, params)
    with step(progress, f"{label} ({client.label}): attacks"):
        run = partial(attack_point, units.task, client, sweep.name, params, batches)
        privacy = units.unit(label, attack_key, run)
    point: dict[str, Any] = {
        "label": label,
        "label_defence": sweep.display,
        "defence": sweep.name,
        "params": params,
        "rank": rank,
        **privacy,
        "sparsity": sparsity_point(units.task, client, sweep.name, params, batches),
    }
    if baseline is not None:
        with step(progress, f"{label} ({client.label}): FedAvg"):
            undefended = sweep.name == "none" and not params
            rounds = int(baseline["rounds"])
            util = baseline if undefended else units.utility(sweep.name, params, label, rounds)
        point["utility"] = _utility_block(util, baseline)
    return point


def _attack_key(cfg: GradientInversionConfig, defence: str, params: dict[str, Any]) -> dict:
    return {
        "unit": "attacks",
        "defence": defence,
        "params": params,
        "attacks": [a.model_dump(mode="json") for a in cfg.attacks],
        "batches": cfg.batches,
        "examples": cfg.examples,
    }


def _attack_unit(
    item: tuple[str, dict[str, Any]],
    *,
    task: FederatedTask,
    client: ClientSetting,
    batches: Batches,
) -> dict[str, Any]:
    return attack_point(task, client, item[0], item[1], batches)


def _utility_unit(
    item: tuple[str, dict[str, Any], int],
    *,
    task: FederatedTask,
    client: ClientSetting,
    batches: Batches,
) -> dict[str, Any]:
    defence, params, rounds = item
    return utility_point(task, client, defence, params, rounds=rounds, server_lr=None)


def _fill_points(units: _Units, batches: Batches, baseline: dict[str, Any] | None) -> None:
    """Every defence point's attacks, and the FedAvg runs of defences whose server rate is
    not tuned, as independent units on the run's backend (the tuned ones follow their
    tuning, point by point)."""
    cfg = units.task.cfg
    points = [(d, p) for d in cfg.defences for p in d.points()]
    units.fill(
        _attack_unit,
        [
            (label, _attack_key(cfg, d.name, params), (d.name, params))
            for d, (_, params, label) in points
        ],
        batches,
    )
    if baseline is None or units.u is None:
        return
    tuned = units.u.lr_tuning.defences if units.u.lr_tuning is not None else []
    rounds = int(baseline["rounds"])
    plain = [
        (f"{label}-utility", units.utility_key(d.name, params, rounds), (d.name, params, rounds))
        for d, (_, params, label) in points
        if not (d.name == "none" and not params) and d.name not in tuned
    ]
    units.fill(_utility_unit, plain, batches)


def run_client_setting(
    task: FederatedTask,
    client: ClientSetting,
    state: StateDir,
    progress: Progress,
    backend: Backend | None = None,
) -> dict[str, Any]:
    cfg = task.cfg
    batches = task.batches(client)
    lo, hi = task.bundle.value_range
    units = _Units(task, client, state, backend)
    baseline_utility, floor = _baseline_utility(units, progress)
    if units.backend.remote:  # locally, each point's units run where the loop below meets them
        with step(progress, f"defence points ({client.label}) on the {units.backend.name} backend"):
            _fill_points(units, batches, baseline_utility)
    points = [
        _defence_point(units, d, point_of, batches, baseline_utility, progress)
        for d in cfg.defences
        for point_of in d.points()
    ]
    x0 = batches[0][0][: cfg.examples]
    return {
        "client": client.model_dump(mode="json") | {"label": client.label},
        "batch_rows": [rows for _, _, rows in batches],
        "baselines": baselines(task, batches),
        "baseline_utility": _baseline_block(baseline_utility),
        "originals": [image_hex(img, (lo, hi)) for img in x0],
        "points": points,
        "utility_noise_floor": floor if cfg.utility else None,
        "matched": matched_comparison(points, cfg.matched_levels, floor) if cfg.utility else {},
    }


def run_gradient_inversion_study(
    cfg: GradientInversionConfig,
    seed: int,
    *,
    state: StateDir,
    cache: Path,
    progress: Progress,
    device: torch.device = CPU,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """The report's ``gradient_inversion`` section for one seed; the attacks' optimisation runs
    on ``device`` (clients, FedAvg and scoring on the CPU); the defence points' units on
    ``backend`` (default: here, one after another)."""
    start = time.perf_counter()
    task = FederatedTask(cfg, seed, cache, progress, device)
    settings = [run_client_setting(task, c, state, progress, backend) for c in cfg.clients]
    return {
        "dataset": cfg.data.name,
        "model": cfg.model.model_dump(mode="json"),
        "model_sha256": task.model_sha256,
        "pretrain_epochs": cfg.pretrain_epochs,
        "members": len(task.members),
        "members_sha256": task.members_sha256,
        "attacks": [a.display for a in cfg.attacks],
        "device": str(device),
        "settings": settings,
        "seconds": time.perf_counter() - start,
    }
