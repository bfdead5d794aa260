"""run_experiment(config) → report: data → models → targets → attacks → metrics → files.

A run folder holds ``report.json``, ``report.html``, ``models/*.safetensors`` and
``state/`` (finished attack results). Models are cached by recipe hash and attack results by
(model, attack, threat model), so re-running an interrupted experiment resumes where it was.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from privlab import __version__
from privlab.config import (
    AnyConfig,
    AttackConfig,
    ConfigError,
    ExperimentConfig,
    GradientInversionExperimentConfig,
    ReferenceModelsConfig,
    TargetConfig,
)
from privlab.data.bundle import DataBundle, Split, stratified_split
from privlab.data.from_config import bundle_from_config
from privlab.experiment.environment import resolve_device, versions
from privlab.experiment.inversion import InversionSetup, evaluate_inversion, inversion_setup
from privlab.experiment.membership import build_attack, evaluate_attack
from privlab.experiment.models import TrainedModel, default_cache_dir, get_or_train
from privlab.experiment.progress import Progress, SilentProgress
from privlab.experiment.reference_models import get_or_train_references
from privlab.experiment.sensitivity import leave_out_sensitivity
from privlab.experiment.store import (
    StateDir,
    atomic_write_json,
    read_json,
    save_model,
    stable_hash,
)
from privlab.metrics.utility import (
    accuracy,
    adversarial_accuracy,
    per_example_loss,
    verified_accuracy,
)
from privlab.registry import ATTACKS
from privlab.threat_model import (
    Access,
    Knowledge,
    LabelledQueries,
    ReferenceModels,
    Target,
    TargetInfo,
)
from privlab.training.perturbations import Norm
from privlab.verify import UnsupportedLayerError

SCHEMA_VERSION = 1


def load_bundle(config: ExperimentConfig, seed: int) -> DataBundle:
    return bundle_from_config(config.data, seed)


def check_access(config: ExperimentConfig) -> Access:
    """Refuse, before any training, attacks that need more than the declared access."""
    try:
        access = Access.parse(config.threat_model.access)
    except ValueError as err:
        raise ConfigError(f"threat_model.access: {err}") from None
    refs = reference_models_config(config)
    for i, cfg in enumerate(config.attacks):
        attack = _granted(cfg, f"attacks.{i}", access)
        if attack.needs_reference and config.threat_model.reference == "none":
            raise ConfigError(
                f"attacks.{i} ({cfg.display}) trains on reference data; set "
                "threat_model.reference to 'shadow' or 'known'"
            )
        if getattr(attack, "mode", None) == "online" and refs is not None and not refs.online:
            raise ConfigError(
                f"attacks.{i} ({cfg.display}) is online: it needs reference models trained on "
                "the audited candidates; set threat_model.reference_models.online: true or the "
                "attack's mode: offline"
            )
    for i, cfg in enumerate(config.inversion.attacks if config.inversion else []):
        _granted(cfg, f"inversion.attacks.{i}", access)
    return access


def _granted(cfg: AttackConfig, where: str, access: Access) -> Any:
    """Build the attack of ``cfg``; a bad parameter or missing access is a ConfigError."""
    try:
        attack = build_attack(cfg)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({cfg.display}): {err}") from None
    missing = attack.requires & ~access
    if missing:
        raise ConfigError(
            f"{where} ({cfg.display}) needs access {missing.names()} but "
            f"threat_model.access grants only {access.names()}"
        )
    return attack


def reference_models_config(config: ExperimentConfig) -> ReferenceModelsConfig | None:
    """The reference models to train: the configured ones, defaults when an attack needs them."""
    if config.threat_model.reference_models is not None:
        return config.threat_model.reference_models
    needed = any(
        getattr(ATTACKS.get(a.name), "needs_reference_models", False) for a in config.attacks
    )
    return ReferenceModelsConfig() if needed else None


def split_reference(
    bundle: DataBundle, config: ExperimentConfig, seed: int
) -> tuple[Split, Split, Split | None, Split | None]:
    """Evaluation members/non-members, and the revealed ones when reference = 'known'."""
    if config.threat_model.reference != "known":
        return bundle.members, bundle.nonmembers, None, None
    k = config.threat_model.known_per_class
    rng = np.random.default_rng(seed + 7)
    parts = []
    for split in (bundle.members, bundle.nonmembers):
        y = split.y.numpy()
        known = np.sort(
            np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)])
        )
        rest = np.setdiff1d(np.arange(len(y)), known)
        parts.append((split.subset(rest), split.subset(known)))
    (m_eval, m_known), (n_eval, n_known) = parts
    return m_eval, n_eval, m_known, n_known


def shadow_splits(bundle: DataBundle, seed: int) -> tuple[Split, Split]:
    """Halve the attacker's population into shadow members and shadow non-members."""
    pop = bundle.population
    n = min(len(pop) // 2, len(bundle.members))
    if n < bundle.num_classes:
        raise ConfigError(f"population of {len(pop)} examples is too small for shadow models")
    idx_in, idx_out = stratified_split(pop.y.numpy(), [n, min(n, len(pop) - n)], seed=seed + 1)
    return pop.subset(idx_in), pop.subset(idx_out)


def loss_histogram(
    model: torch.nn.Module, bundle: DataBundle, bins: int, device: torch.device
) -> dict[str, Any]:
    """Member vs non-member log10-loss histograms (Song et al. Fig. 1)."""
    losses = [
        per_example_loss(model, s.x, s.y, device=device).clamp_min(1e-12).log10().numpy()
        for s in (bundle.members, bundle.nonmembers)
    ]
    edges = np.linspace(
        min(-12.0, float(np.min(np.r_[losses[0], losses[1]]))),
        max(1.0, float(np.max(np.r_[losses[0], losses[1]]))),
        bins + 1,
    )
    counts = [np.histogram(v, bins=edges)[0] / max(len(v), 1) for v in losses]
    return {
        "log10": True,
        "bins": edges.tolist(),
        "members": counts[0].tolist(),
        "nonmembers": counts[1].tolist(),
        "zero_loss_fraction": {
            "members": float(np.mean(losses[0] <= -6)),
            "nonmembers": float(np.mean(losses[1] <= -6)),
        },
    }


class Runner:
    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: Path,
        *,
        device: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out_dir)
        self.device = resolve_device(device or config.device)
        self.progress = progress or SilentProgress()
        self.cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.access = check_access(config)
        self.timings = {"train_seconds": 0.0, "attack_seconds": 0.0, "utility_seconds": 0.0}
        #: the seed's inversion prior and evaluator (their public data also feeds TL-DMI)
        self.inversion: InversionSetup | None = None

    def _recipe(self, tcfg: TargetConfig) -> dict[str, Any]:
        """How a target is trained (shared by its shadow and reference models) and cached."""
        return {
            "model_cfg": self.config.model_for(tcfg),
            "regime_cfg": tcfg.regime,
            "train_cfg": self.config.train_for(tcfg),
            "device": self.device,
            "cache_dir": self.cache,
            "progress": self.progress,
        }

    def _train(
        self, role: str, data: Split, bundle: DataBundle, tcfg: TargetConfig, seed: int, label: str
    ) -> TrainedModel:
        trained = get_or_train(
            role=role,
            data=data,
            bundle=bundle,
            seed=seed,
            label=label,
            public=self.inversion.public if self.inversion is not None else None,
            **self._recipe(tcfg),
        )
        if not trained.cached:
            self.timings["train_seconds"] += trained.seconds
        return trained

    def _info(self, name: str, bundle: DataBundle, trained: TrainedModel) -> TargetInfo:
        eps, norm = trained.regime.budget()
        tm = self.config.threat_model
        return TargetInfo(
            name=name,
            num_classes=bundle.num_classes,
            input_shape=bundle.input_shape,
            value_range=bundle.value_range,
            eps=eps if eps is not None else tm.eps,
            norm=cast(Norm, norm if eps is not None else tm.norm),
            verifier=getattr(trained.regime, "verifier", None),
        )

    def _verified(
        self, model: torch.nn.Module, info: TargetInfo, bundle: DataBundle
    ) -> dict[str, float | None]:
        """Verified train/test accuracy (Song §3.4) with the model's own training verifier (IBP
        for the others); None where the verifier cannot bound the model."""
        assert info.eps is not None
        try:
            return {
                f"ver_{name}_acc": verified_accuracy(
                    model,
                    split.x,
                    split.y,
                    eps=info.eps,
                    clip=info.value_range,
                    verifier=info.verifier or "ibp",
                    device=self.device,
                )
                for name, split in (("train", bundle.members), ("test", bundle.nonmembers))
            }
        except UnsupportedLayerError:
            return {"ver_train_acc": None, "ver_test_acc": None}

    def _utility(
        self, trained: TrainedModel, info: TargetInfo, bundle: DataBundle, seed: int
    ) -> dict[str, float | None]:
        start = time.perf_counter()
        ev, m, dev = self.config.evaluation, trained.model, self.device
        torch.manual_seed(seed)
        out: dict[str, float | None] = {
            "train_acc": accuracy(m, bundle.members.x, bundle.members.y, device=dev),
            "test_acc": accuracy(m, bundle.nonmembers.x, bundle.nonmembers.y, device=dev),
            "adv_train_acc": None,
            "adv_test_acc": None,
        }
        if info.eps and ev.adv_steps > 0:
            kw: dict[str, Any] = dict(
                eps=info.eps,
                steps=ev.adv_steps,
                step_size=ev.adv_step_size,
                norm=info.norm,
                clip=info.value_range,
                device=dev,
            )
            out["adv_train_acc"] = adversarial_accuracy(m, bundle.members.x, bundle.members.y, **kw)
            out["adv_test_acc"] = adversarial_accuracy(
                m, bundle.nonmembers.x, bundle.nonmembers.y, **kw
            )
            out.update(self._verified(m, info, bundle))
        self.timings["utility_seconds"] += time.perf_counter() - start
        return out

    def _utility_cached(
        self, trained: TrainedModel, info: TargetInfo, bundle: DataBundle, seed: int
    ) -> dict[str, float | None]:
        key = stable_hash([trained.key, self.config.evaluation.model_dump(), info.eps])
        path = self.out / "state" / f"utility-{key}.json"
        if path.is_file():
            return dict(read_json(path))
        utility = self._utility(trained, info, bundle, seed)
        atomic_write_json(path, utility)
        return utility

    def _attacks(
        self,
        trained: TrainedModel,
        target: Target,
        knowledge: Knowledge,
        members: Split,
        nonmembers: Split,
        seed: int,
    ) -> list[dict[str, Any]]:
        """Every configured attack on one target; finished results come from ``state/``."""
        results = []
        for acfg in self.config.attacks:
            key = stable_hash(
                [
                    __version__,
                    trained.key,
                    target.temperature,
                    acfg.model_dump(),
                    self.config.threat_model.model_dump(),
                ]
            )
            path = self.out / "state" / f"attack-{key}.json"
            if path.is_file():
                results.append(read_json(path))
                continue
            task = self.progress.task(f"{acfg.display} on {target.info.name}", 1)
            result = evaluate_attack(acfg, target, knowledge, members, nonmembers, seed)
            task.done()
            self.timings["attack_seconds"] += result["seconds"]
            atomic_write_json(path, result)
            results.append(result)
        return results

    def _sensitivity(
        self, tcfg: TargetConfig, trained: TrainedModel, bundle: DataBundle, seed: int, label: str
    ) -> dict[str, Any] | None:
        cfg = self.config.sensitivity
        if cfg is None or (cfg.targets is not None and tcfg.name not in cfg.targets):
            return None

        def retrain(data: Split, round_: int) -> torch.nn.Module:
            name = f"{label} leave-out {round_ + 1}/{cfg.rounds}"
            return self._train("leave_out", data, bundle, tcfg, seed, name).model

        return leave_out_sensitivity(
            trained.model, bundle.members, retrain, rounds=cfg.rounds, seed=seed, device=self.device
        )

    def _references(
        self, tcfg: TargetConfig, info: TargetInfo, bundle: DataBundle, seed: int, label: str
    ) -> tuple[ReferenceModels | None, dict[str, Any] | None]:
        cfg = reference_models_config(self.config)
        if cfg is None:
            return None, None
        refs, summary = get_or_train_references(
            cfg,
            bundle=bundle,
            info=replace(info, name=f"{label} reference"),
            seed=seed,
            label=label,
            **self._recipe(tcfg),
        )
        if not summary["cached"]:
            self.timings["train_seconds"] += summary["train_seconds"]
        return refs, summary

    def run_target(self, tcfg: TargetConfig, bundle: DataBundle, seed: int) -> list[dict[str, Any]]:
        """Train (or load) one target, measure utility, and attack it at every temperature."""
        label = f"{tcfg.name}/seed{seed}" if len(self.config.run_seeds()) > 1 else tcfg.name
        trained = self._train("target", bundle.members, bundle, tcfg, seed, label)
        save_model(
            trained.model,
            self.out / "models" / f"{label.replace('/', '_')}.safetensors",
            {"target": label, "cache_key": trained.key, "config": tcfg.model_dump()},
        )
        info = self._info(label, bundle, trained)
        utility = self._utility_cached(trained, info, bundle, seed)
        losses = loss_histogram(
            trained.model, bundle, self.config.evaluation.histogram_bins, self.device
        )
        m_eval, n_eval, m_known, n_known = split_reference(bundle, self.config, seed)
        shadow: tuple[TrainedModel, TargetInfo, Split, Split] | None = None
        if self.config.threat_model.reference == "shadow" and self.config.attacks:
            s_in, s_out = shadow_splits(bundle, seed)
            model = self._train("shadow", s_in, bundle, tcfg, seed + 10_000, f"{label} shadow")
            shadow = (model, self._info(f"{label} shadow", bundle, model), s_in, s_out)
        sensitivity = self._sensitivity(tcfg, trained, bundle, seed, label)
        references, references_summary = self._references(tcfg, info, bundle, seed, label)
        several = len(tcfg.temperatures()) > 1
        inversion = None
        if self.inversion is not None:
            plain = Target(trained.model, info, self.access, device=self.device)
            inversion = evaluate_inversion(
                trained,
                plain,
                self.inversion,
                bundle,
                self.config,
                seed,
                out_dir=self.out,
                device=self.device,
                progress=self.progress,
            )
            self.timings["attack_seconds"] += inversion["seconds"]
        entries = []
        for temperature in tcfg.temperatures():
            name = f"{label}@T={temperature:g}" if several else label
            target = Target(
                trained.model,
                replace(info, name=name),
                self.access,
                device=self.device,
                temperature=temperature,
            )
            reference: list[LabelledQueries] = []
            if shadow is not None:
                s_model, s_info, s_in, s_out = shadow
                s_target = Target(
                    s_model.model, s_info, self.access, device=self.device, temperature=temperature
                )
                reference = [LabelledQueries(s_target, s_in, s_out, "shadow")]
            elif m_known is not None and n_known is not None:
                reference = [LabelledQueries(target, m_known, n_known, "known")]
            knowledge = Knowledge(
                population=bundle.population,
                reference=tuple(reference),
                reference_models=references,
            )
            entries.append(
                {
                    "name": name,
                    "base_name": f"{tcfg.name}@T={temperature:g}" if several else tcfg.name,
                    "seed": seed,
                    "regime": tcfg.regime.name,
                    "regime_params": trained.regime.params(),
                    "model": self.config.model_for(tcfg).model_dump(),
                    "model_sha256": trained.sha256,
                    "cache_key": trained.key,
                    "temperature": temperature,
                    "train_seconds": trained.seconds,
                    "eps": info.eps,
                    "norm": info.norm,
                    "utility": utility,
                    "privacy": trained.summary,
                    "losses": losses,
                    "attacks": self._attacks(trained, target, knowledge, m_eval, n_eval, seed),
                    "sensitivity": sensitivity,
                    "reference_models": references_summary,
                    "inversion": inversion,
                }
            )
        return entries

    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        targets: list[dict[str, Any]] = []
        splits: dict[str, Any] = {}
        for seed in self.config.run_seeds():
            bundle = load_bundle(self.config, seed)
            splits[str(seed)] = {
                "members": len(bundle.members),
                "nonmembers": len(bundle.nonmembers),
                "population": len(bundle.population),
                "sha256": bundle.hashes(),
            }
            if self.config.inversion is not None:
                self.inversion = inversion_setup(
                    self.config,
                    bundle,
                    seed,
                    device=self.device,
                    cache_dir=self.cache,
                    progress=self.progress,
                )
                splits[str(seed)]["inversion"] = {
                    "public": len(self.inversion.public),
                    "public_sha256": self.inversion.public.sha256(),
                    "prior_key": self.inversion.prior_key,
                    "evaluator_sha256": self.inversion.evaluator.sha256,
                    "evaluator_test_acc": self.inversion.evaluator_test_acc,
                }
            for tcfg in self.config.targets:
                targets.extend(self.run_target(tcfg, bundle, seed))
        gradient_inversion = None
        if self.config.gradient_inversion is not None:
            from privlab.experiment.gradient_inversion import run_gradient_inversion_study

            gradient_inversion = run_gradient_inversion_study(
                self.config.gradient_inversion,
                self.config.run_seeds()[0],
                state=StateDir(self.out),
                cache=self.cache,
                progress=self.progress,
                device=self.device,
            )
        report = {
            "schema_version": SCHEMA_VERSION,
            "config": self.config.model_dump(mode="json"),
            "seed": self.config.run_seeds()[0],
            "seeds": self.config.run_seeds(),
            "versions": versions() | {"privlab": __version__},
            "device": str(self.device),
            "timings": {"total_seconds": time.perf_counter() - start, **self.timings},
            "data": {"name": self.config.data.name, "splits": splits},
            "targets": targets,
        }
        if gradient_inversion is not None:
            report["gradient_inversion"] = gradient_inversion
        write_report(report, self.out)
        return report


def write_report(report: dict[str, Any], out: Path) -> None:
    from privlab.experiment.html import write_html

    atomic_write_json(out / "report.json", report)
    write_html(report, out / "report.html")


def run_experiment(
    config: AnyConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every target × seed × attack of ``config``; write and return the report. A
    ``kind: reconstruction`` config runs :func:`privlab.experiment.reconstruction.
    run_reconstruction` instead."""
    if isinstance(config, GradientInversionExperimentConfig):
        from privlab.experiment.gradient_inversion import run_gradient_inversion

        return run_gradient_inversion(config, out_dir, device=device, progress=progress)
    if not isinstance(config, ExperimentConfig):
        from privlab.experiment.reconstruction import run_reconstruction

        return run_reconstruction(config, out_dir, device=device, progress=progress)
    return Runner(config, Path(out_dir), device=device, progress=progress).run()
