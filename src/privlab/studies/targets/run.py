"""The targets study's run for one seed: data → trained targets → utility → attacks.

Models are cached by recipe hash (:mod:`privlab.run.model_cache`) and finished utility and
attack results are units of the run's ``state/``, so an interrupted run resumes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from functools import partial
from typing import Any, cast

import torch

from privlab import __version__
from privlab.config.base import AttackConfig
from privlab.data.bundle import DataBundle, Split
from privlab.run.context import RunContext
from privlab.run.model_cache import TrainedModel, build_model, build_regime, get_or_train
from privlab.run.weights import save_model, state_sha256
from privlab.studies.targets.canary_audit import (
    in_training_audit,
    run_canary_audit,
    white_box_audit,
)
from privlab.studies.targets.config import CanaryAuditConfig, TargetConfig, TargetsConfig
from privlab.studies.targets.inversion import InversionSetup, evaluate_inversion, inversion_setup
from privlab.studies.targets.membership import evaluate_attack
from privlab.studies.targets.reference_models import get_or_train_references, trained_by_fn
from privlab.studies.targets.sensitivity import leave_out_sensitivity
from privlab.studies.targets.threat import (
    check_access,
    load_bundle,
    loss_histogram,
    reference_models_config,
    shadow_splits,
    split_reference,
)
from privlab.studies.targets.utility import target_utility
from privlab.threat_model import (
    Knowledge,
    LabelledQueries,
    ReferenceModels,
    Target,
    TargetInfo,
)
from privlab.training.perturbations import Norm


class TargetsRun:
    """One seed of the targets study, over the run context's folders, cache and device."""

    def __init__(self, config: TargetsConfig, ctx: RunContext, seed: int) -> None:
        self.config = config
        self.ctx = ctx
        self.seed = seed
        self.out = ctx.out
        self.device = ctx.device
        self.progress = ctx.progress
        self.cache = ctx.cache
        self.access = check_access(config)
        for key in ("train_seconds", "attack_seconds", "utility_seconds"):
            ctx.timings.setdefault(key, 0.0)  # always in the report, 0 when all was cached
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
            self.ctx.add_time("train_seconds", trained.seconds)
        return trained

    def _target(
        self, tcfg: TargetConfig, bundle: DataBundle, seed: int, label: str
    ) -> TrainedModel:
        """The target, trained (or given), saved in the run folder's models/."""
        trained = (
            self._given(tcfg, bundle, seed)
            if tcfg.given is not None
            else self._train("target", bundle.members, bundle, tcfg, seed, label)
        )
        save_model(
            trained.model,
            self.out / "models" / f"{label.replace('/', '_')}.safetensors",
            {"target": label, "cache_key": trained.key, "config": tcfg.model_dump()},
        )
        return trained

    def _given(self, tcfg: TargetConfig, bundle: DataBundle, seed: int) -> TrainedModel:
        """The user's model as it is (an audit): built from its architecture with its weights,
        checked against the data, never trained. The cache key is its weights' hash."""
        from privlab.auditing.checks import check_model_and_data

        assert tcfg.given is not None
        component = self.config.model_for(tcfg)
        params = component.params | {"given": True}
        params |= {"weights": tcfg.given.weights} if tcfg.given.weights else {}
        model = build_model(component.model_copy(update={"params": params}), bundle, seed)
        check_model_and_data(
            model,
            bundle.members,
            bundle.nonmembers,
            bundle.population if len(bundle.population) else None,
            value_range=bundle.value_range,
        )
        model = copy.deepcopy(model).eval()  # the user's module is never frozen or moved
        digest = state_sha256(model)
        regime = build_regime(tcfg.regime, bundle)
        train = self.config.train_for(tcfg)  # a DP recipe: the privacy its training promises
        planned = regime.planned_summary(
            len(bundle.members), batch_size=train.batch_size, epochs=train.epochs
        )
        summary = {"given": True} | planned
        return TrainedModel(model, regime, digest, digest, 0.0, summary, cached=True)

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

    def _utility_cached(
        self, trained: TrainedModel, info: TargetInfo, bundle: DataBundle, seed: int
    ) -> dict[str, float | None]:
        key = {
            "model": trained.key,
            "evaluation": self.config.evaluation.model_dump(),
            "eps": info.eps,
        }

        def measure() -> dict[str, float | None]:
            start = time.perf_counter()
            torch.manual_seed(seed)
            out = target_utility(trained.model, info, bundle, self.config.evaluation, self.device)
            self.ctx.add_time("utility_seconds", time.perf_counter() - start)
            return out

        return self.ctx.state.get_or_run("utility", key, measure)

    def _attacks(
        self,
        trained: TrainedModel,
        target: Target,
        knowledge: Knowledge,
        members: Split,
        nonmembers: Split,
        seed: int,
        feature_names: tuple[str, ...] | None = None,
    ) -> list[dict[str, Any]]:
        """Every configured attack on one target; finished results come from ``state/``."""
        results = []
        delta = trained.summary.get("delta")  # a DP target's δ for the ε lower bounds
        for acfg in self.config.attacks:
            key = {
                "privlab": __version__,
                "model": trained.key,
                "temperature": target.temperature,
                "attack": acfg.model_dump(),
                "threat_model": self.config.threat_model.model_dump(),
            }

            def attack(acfg: AttackConfig = acfg) -> dict[str, Any]:
                task = self.progress.task(f"{acfg.display} on {target.info.name}", 1)
                result = evaluate_attack(
                    acfg, target, knowledge, members, nonmembers, seed, feature_names,
                    **({"delta": delta} if delta is not None else {}),
                )  # fmt: skip
                task.done()
                self.ctx.add_time("attack_seconds", result["seconds"])
                return result

            results.append(self.ctx.state.get_or_run(f"attack-{acfg.display}", key, attack))
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
            trainer=self.config.threat_model.trainer,
            backend=self.ctx.backend,
            **self._recipe(tcfg),
        )
        if not summary["cached"]:
            self.ctx.add_time("train_seconds", summary["train_seconds"])
        return refs, summary

    def _dp_audit(
        self,
        tcfg: TargetConfig,
        trained: TrainedModel,
        info: TargetInfo,
        bundle: DataBundle,
        seed: int,
        label: str,
    ) -> dict[str, Any] | None:
        """The DP audits of the target (``dp_audit``), a ``state/`` unit: an interrupted run
        does not train the canary runs again."""
        cfg = self.config.dp_audit
        if cfg is None or (cfg.targets is not None and tcfg.name not in cfg.targets):
            return None
        key = {
            "privlab": __version__,
            "model": trained.key,
            "dp_audit": cfg.model_dump(),
            "train": self.config.train_for(tcfg).recipe(),
            "seed": seed,
        }
        run = partial(self._run_dp_audit, cfg, tcfg, trained, info, bundle, seed, label)
        return self.ctx.state.get_or_run("dp-audit", key, run)

    def _run_dp_audit(
        self,
        cfg: CanaryAuditConfig,
        tcfg: TargetConfig,
        trained: TrainedModel,
        info: TargetInfo,
        bundle: DataBundle,
        seed: int,
        label: str,
    ) -> dict[str, Any]:
        """The white-box audit of a DP-SGD target's step, the gradient canary inside its
        recipe's training and the black-box canary runs (for a given model: trained with the
        recipe it came with, from fresh weights of its architecture)."""
        recipe = self._recipe(tcfg)  # a given model's: the recipe it says it was trained with
        out = {
            "white_box": white_box_audit(cfg, trained.summary, seed),
            "in_training": in_training_audit(
                cfg, bundle=bundle, seed=seed, device=self.device,
                **{k: recipe[k] for k in ("model_cfg", "regime_cfg", "train_cfg")},
            ),
        }  # fmt: skip
        if cfg.canaries == 0:
            return out | {"skipped": "black-box canary runs: no canaries asked for"}
        audit = run_canary_audit(
            cfg,
            bundle=bundle,
            info=replace(info, name=f"{label} canary run"),
            seed=seed,
            label=label,
            backend=self.ctx.backend,
            **recipe,
        )
        if not audit["cached"]:
            self.ctx.add_time("train_seconds", audit["train_seconds"])
        return audit | out

    def _shadow(
        self, tcfg: TargetConfig, bundle: DataBundle, seed: int, label: str
    ) -> tuple[TrainedModel, TargetInfo, Split, Split] | None:
        """The shadow model trained with the target's recipe (or the user's training
        function) on half the population."""
        if self.config.threat_model.reference != "shadow" or not self.config.attacks:
            return None
        s_in, s_out = shadow_splits(bundle, seed)
        name, s_seed = f"{label} shadow", seed + 10_000
        trainer = self.config.threat_model.trainer
        model = (
            self._train("shadow", s_in, bundle, tcfg, s_seed, name)
            if trainer is None
            else self._train_by_fn(trainer, s_in, bundle, tcfg, s_seed, name)
        )
        return model, self._info(name, bundle, model), s_in, s_out

    def _train_by_fn(
        self,
        trainer: str,
        data: Split,
        bundle: DataBundle,
        tcfg: TargetConfig,
        seed: int,
        label: str,
    ) -> TrainedModel:
        """A shadow model trained by the user's training function (or loaded from the cache)."""
        made = trained_by_fn(
            trainer,
            [(data, seed)],
            {"role": "shadow", "seeds": [seed], "data_sha256": data.sha256()},
            model_cfg=self.config.model_for(tcfg),
            bundle=bundle,
            cache_dir=self.cache,
            progress=self.progress,
            label=label,
        )
        if not made.cached:
            self.ctx.add_time("train_seconds", made.seconds)
        model = made.models[0]
        digest = state_sha256(model)
        regime = build_regime(tcfg.regime, bundle)
        summary = {"trainer": made.trainer}
        return TrainedModel(
            model, regime, made.key or digest, digest, made.seconds, summary, made.cached
        )

    def _inversion(
        self, trained: TrainedModel, info: TargetInfo, bundle: DataBundle, seed: int
    ) -> dict[str, Any] | None:
        if self.inversion is None:
            return None
        plain = Target(trained.model, info, self.access, device=self.device)
        inversion = evaluate_inversion(
            trained,
            plain,
            self.inversion,
            bundle,
            self.config,
            seed,
            state=self.ctx.state,
            grid_seed=self.ctx.seeds[0],
            device=self.device,
            progress=self.progress,
        )
        self.ctx.add_time("attack_seconds", inversion["seconds"])
        return inversion

    def _reference(
        self,
        target: Target,
        shadow: tuple[TrainedModel, TargetInfo, Split, Split] | None,
        known: tuple[Split | None, Split | None],
    ) -> tuple[LabelledQueries, ...]:
        """The attacker's labelled reference data: its shadow model, or revealed points."""
        if shadow is not None:
            s_model, s_info, s_in, s_out = shadow
            s_target = Target(
                s_model.model,
                s_info,
                self.access,
                device=self.device,
                temperature=target.temperature,
            )
            return (LabelledQueries(s_target, s_in, s_out, "shadow"),)
        if known[0] is not None and known[1] is not None:
            return (LabelledQueries(target, known[0], known[1], "known"),)
        return ()

    def run_target(self, tcfg: TargetConfig, bundle: DataBundle, seed: int) -> list[dict[str, Any]]:
        """Train (or load) one target, measure utility, and attack it at every temperature."""
        label = f"{tcfg.name}/seed{seed}" if len(self.ctx.seeds) > 1 else tcfg.name
        trained = self._target(tcfg, bundle, seed, label)
        info = self._info(label, bundle, trained)
        m_eval, n_eval, m_known, n_known = split_reference(bundle, self.config, seed)
        shadow = self._shadow(tcfg, bundle, seed, label)
        references, references_summary = self._references(tcfg, info, bundle, seed, label)
        shared = {
            "seed": seed,
            "regime": tcfg.regime.name,
            "regime_params": trained.regime.params(),
            "model": self.config.model_for(tcfg).model_dump(),
            "model_sha256": trained.sha256,
            "cache_key": trained.key,
            "train_seconds": trained.seconds,
            "eps": info.eps,
            "norm": info.norm,
            "utility": self._utility_cached(trained, info, bundle, seed),
            "privacy": trained.summary,
            "losses": loss_histogram(
                trained.model, bundle, self.config.evaluation.histogram_bins, self.device
            ),
            "sensitivity": self._sensitivity(tcfg, trained, bundle, seed, label),
            "reference_models": references_summary,
            "dp_audit": self._dp_audit(tcfg, trained, info, bundle, seed, label),
            "inversion": self._inversion(trained, info, bundle, seed),
        }
        several = len(tcfg.temperatures()) > 1
        entries = []
        for temperature in tcfg.temperatures():
            suffix = f"@T={temperature:g}" if several else ""
            target = Target(
                trained.model,
                replace(info, name=label + suffix),
                self.access,
                device=self.device,
                temperature=temperature,
            )
            knowledge = Knowledge(
                population=bundle.population,
                reference=self._reference(target, shadow, (m_known, n_known)),
                reference_models=references,
            )
            attacks = self._attacks(
                trained, target, knowledge, m_eval, n_eval, seed, bundle.feature_names
            )
            entries.append(
                {
                    "name": label + suffix,
                    "base_name": tcfg.name + suffix,
                    "temperature": temperature,
                }
                | shared
                | {"attacks": attacks}
            )
        return entries

    def _inversion_setup(self, bundle: DataBundle) -> dict[str, Any]:
        self.inversion = inversion_setup(
            self.config,
            bundle,
            self.seed,
            device=self.device,
            cache_dir=self.cache,
            progress=self.progress,
        )
        return {
            "public": len(self.inversion.public),
            "public_sha256": self.inversion.public.sha256(),
            "prior_key": self.inversion.prior_key,
            "evaluator_sha256": self.inversion.evaluator.sha256,
            "evaluator_test_acc": self.inversion.evaluator_test_acc,
        }

    def run(self) -> dict[str, Any]:
        """The seed's section: its data splits (sizes, hashes) and every target's entries."""
        bundle = load_bundle(self.config, self.seed)
        data: dict[str, Any] = {
            "name": self.config.data.name,
            "members": len(bundle.members),
            "nonmembers": len(bundle.nonmembers),
            "population": len(bundle.population),
            "sha256": bundle.hashes(),
        }
        if self.config.inversion is not None:
            data["inversion"] = self._inversion_setup(bundle)
        targets = [
            entry
            for tcfg in self.config.targets
            for entry in self.run_target(tcfg, bundle, self.seed)
        ]
        return {"seed": self.seed, "data": data, "targets": targets}
