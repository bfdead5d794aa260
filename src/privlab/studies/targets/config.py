"""The ``targets:`` section: targets trained per seed (data, architecture, regimes), the
threat model, membership attacks, and the per-target analyses (sensitivity, model inversion)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from privlab.config.base import (
    AttackConfig,
    Component,
    DataConfig,
    TrainConfig,
    _check_family,
    _check_name,
    _Strict,
    check_unique,
    expand_sweep,
)
from privlab.registry import DATASETS, MODELS, REGIMES


class GivenModel(_Strict):
    """A target that is given, not trained (an audit of the user's model): the target's
    architecture (``model``) loaded with these ``weights`` (safetensors, or a state dict that
    loads with weights_only=True; none for an exported program, which carries its own)."""

    weights: str | None = None


class TargetConfig(_Strict):
    name: str
    #: how the target was (or is) trained; a given target's shadow and reference models are
    #: trained with it
    regime: Component = Component(name="natural")
    model: Component | None = None  # defaults to the experiment's model
    given: GivenModel | None = None  # not trained: the user's model, audited as it is
    train: dict[str, Any] = Field(default_factory=dict)  # overrides of the experiment's train
    temperature: float | list[float] = 1.0  # output-side temperature scaling (Song §7.2.1)

    @field_validator("train")
    @classmethod
    def _check_train_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(TrainConfig.model_fields))
        if unknown:
            raise ValueError(
                f"unknown train key(s) {unknown}; valid: {sorted(TrainConfig.model_fields)}"
            )
        return value

    def temperatures(self) -> list[float]:
        return list(self.temperature) if isinstance(self.temperature, list) else [self.temperature]


class ReferenceModelsConfig(_Strict):
    """Reference (shadow) models the attacker trains itself (LiRA, RMIA, Shokri et al.).

    Each example of the pool is in the training set of exactly ``fraction`` of the ``count``
    models. ``online``: the pool holds the audited candidates as well as the attacker's
    population (Carlini et al.'s online setting); otherwise the population only (offline).
    ``recipe: target`` trains them like the target (architecture, regime and optimiser are
    public, Kerckhoffs); ``natural`` trains them naturally whatever the target's regime.
    """

    count: int = Field(16, ge=2)
    online: bool = True
    fraction: float = Field(0.5, gt=0, lt=1)
    recipe: Literal["target", "natural"] = "target"
    chunk_size: int | None = Field(None, ge=1)  # models trained at once (memory)
    #: the ensemble's parts, each a vectorised ensemble and one unit of the run's backend (a
    #: Ray task, or a thread of the local backend); results do not depend on the backend
    tasks: int = Field(4, ge=1)
    #: the share of a GPU each part asks for where the cluster has GPUs (else it runs on CPU)
    gpus: float = Field(0.25, ge=0, le=1)


class ThreatModelConfig(_Strict):
    access: list[str] = Field(default_factory=lambda: ["probs", "input_gradients"])
    #: labelled data the attacker learns from: its own shadow model, revealed members, or none
    reference: Literal["shadow", "known", "none"] = "shadow"
    known_per_class: int = Field(50, ge=1)  # revealed members (and non-members) per class
    #: perturbation budget assumed for targets trained without one (natural models)
    eps: float = Field(0.1, ge=0)
    norm: Literal["linf", "l2"] = "linf"
    #: reference models for LiRA / RMIA / Shokri; defaults apply when such an attack is asked for
    reference_models: ReferenceModelsConfig | None = None
    #: ``memory-trainer:<key>``: the user's training function handed to privlab.audit(train_fn=)
    #: (in-process only), which then trains the shadow and every reference model in place of
    #: the target's recipe; None: privlab's training loop with the recipe
    trainer: str | None = None

    @field_validator("trainer")
    @classmethod
    def _check_trainer(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("memory-trainer:"):
            raise ValueError(
                "a trainer is a training function handed to privlab.audit(train_fn=...) "
                f"(memory-trainer:<key>), not {value!r}"
            )
        return value


class EvaluationConfig(_Strict):
    adv_steps: int = Field(20, ge=0)  # PGD steps for adversarial train/test accuracy
    adv_step_size: float | None = None
    histogram_bins: int = Field(40, ge=5)


class SensitivityConfig(_Strict):
    """Leave-out sensitivity analysis (Song et al. §5.2.1): retrain without a few members."""

    rounds: int = Field(6, ge=1)  # each round removes one member per class and retrains
    targets: list[str] | None = None  # target names to analyse (default: all)


class CanaryAuditConfig(_Strict):
    """DP auditing with canaries (Steinke, Nasr & Jagielski 2023; Jagielski et al. 2020):
    ``canaries`` population examples made recognisable (``mislabelled`` or ``ood``), each
    inserted into training with probability ½, the target's recipe trained ``runs`` times on
    its members plus the inserted canaries; the attacker's ``guesses`` "in" (its highest
    scores) and as many "out" (its lowest) per run give an ε lower bound at ``confidence``
    (default guesses: a tenth of the canaries each way). ``delta`` is used for a recipe with
    no accountant (a non-private target); a DP recipe's own δ otherwise. A DP-SGD target's
    step is also audited white-box with ``gradient_runs`` gradient-canary runs at its σ, C, q,
    steps and δ (:mod:`privlab.training.dp_canaries`; 0: not), and, with ``training_runs``,
    inside real training: that many models of the recipe trained as one ensemble with a
    gradient canary in half of them, the auditor reading their weights."""

    canaries: int = Field(1000, ge=0)  # 0: the white-box audit alone
    kind: Literal["mislabelled", "ood"] = "mislabelled"
    runs: int = Field(1, ge=1)
    guesses: int | None = Field(None, ge=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    delta: float = Field(1e-5, ge=0, lt=1)
    gradient_runs: int = Field(1000, ge=0)
    #: DP-SGD targets: models trained with a Dirac gradient canary in half of them (0: none)
    training_runs: int = Field(0, ge=0)
    targets: list[str] | None = None  # target names to audit (default: all)
    tasks: int = Field(1, ge=1)  # the runs' parts, each a backend unit
    gpus: float = Field(0.25, ge=0, le=1)

    def guesses_for(self, total: int) -> int:
        """Guesses each way among ``total`` (canary, run) inclusions."""
        k = self.guesses if self.guesses is not None else max(1, total // 10)
        return min(k, total // 2) if total > 1 else 1


class PriorConfig(_Strict):
    """The attacker's generative prior (a VAE standing in for StyleGAN), trained on public data.

    ``public_classes``: the dataset's classes the prior is trained on, all of their images
    (they must be disjoint from ``data.classes``); None: the bundle's population, i.e. other
    images of the private classes.
    """

    name: Literal["vae"] = "vae"
    latent: int = Field(8, ge=1)
    hidden: int = Field(400, ge=1)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    public_classes: list[int] | None = Field(None, min_length=1)


class EvaluatorConfig(_Strict):
    """The judge: a classifier of another architecture trained naturally on the private data."""

    model: Component = Component(name="cnn_small")
    train: TrainConfig = TrainConfig(epochs=20)


class RobustnessConfig(_Strict):
    """Robust test accuracy under an L∞ attack (AT-AT measures APGD-CE)."""

    attack: Literal["apgd_ce", "pgd"] = "apgd_ce"
    eps: float = Field(0.1, gt=0)
    steps: int = Field(50, ge=1)
    samples: int = Field(500, ge=1)  # test examples attacked


class InversionConfig(_Strict):
    """Model inversion of every target: attacks, prior, evaluator and the metrics around them."""

    attacks: list[AttackConfig] = Field(min_length=1)
    classes: list[int] | None = Field(None, min_length=1)  # attacked classes (default: all)
    prior: PriorConfig = PriorConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    robustness: RobustnessConfig | None = RobustnessConfig()
    hsic_samples: int = Field(512, ge=0)  # test examples for nHSIC per layer (0: skip)
    hsic_batch: int = Field(128, ge=2)
    grid_classes: int = Field(10, ge=0)  # classes shown in the report's image grid


class TargetsConfig(_Strict):
    """Targets trained on ``data`` with their regimes, once per seed of the run, and attacked:
    membership inference (``attacks``), leave-out ``sensitivity``, model ``inversion``."""

    data: DataConfig
    model: Component
    train: TrainConfig = TrainConfig()
    targets: list[TargetConfig] = Field(min_length=1)
    threat_model: ThreatModelConfig = ThreatModelConfig()
    attacks: list[AttackConfig] = Field(default_factory=list)
    evaluation: EvaluationConfig = EvaluationConfig()
    sensitivity: SensitivityConfig | None = None
    inversion: InversionConfig | None = None
    dp_audit: CanaryAuditConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _expand_sweeps(cls, data: Any) -> Any:
        """A swept regime or attack is one target or attack per value (config.base.Swept)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, component, name_key in (("targets", "regime", "name"), ("attacks", None, "label")):
            if isinstance(data.get(key), list):
                data[key] = [
                    expanded
                    for i, entry in enumerate(data[key])
                    for expanded in expand_sweep(
                        entry,
                        component,
                        name_key,
                        f"{key}.{i}" + (f".{component}" if component else ""),
                    )
                ]
        return data

    @model_validator(mode="after")
    def _check(self) -> TargetsConfig:
        names = [t.name for t in self.targets]
        check_unique(names, "target names")
        check_unique([a.display for a in self.attacks], "attack labels", " (set 'label')")
        _check_name(DATASETS, self.data.name, "data.name")
        _check_name(MODELS, self.model.name, "model.name")
        for i, t in enumerate(self.targets):
            _check_name(REGIMES, t.regime.name, f"targets.{i}.regime.name")
            try:  # parameters checked before anything is trained (a typo, gdp, a bad value)
                REGIMES.build(t.regime.name, **t.regime.params)
            except (TypeError, ValueError) as err:
                raise ValueError(f"targets.{i}.regime: {err}") from None
            if t.model is not None:
                _check_name(MODELS, t.model.name, f"targets.{i}.model.name")
        for i, a in enumerate(self.attacks):
            _check_family(a.name, "membership", f"attacks.{i}.name")
        if self.inversion is not None:
            for i, a in enumerate(self.inversion.attacks):
                _check_family(a.name, "inversion", f"inversion.attacks.{i}.name")
            check_unique([a.display for a in self.inversion.attacks], "inversion attack labels")
            public = set(self.inversion.prior.public_classes or [])
            overlap = sorted(public & set(self.data.classes or []))
            if overlap or (public and self.data.classes is None):
                raise ValueError(
                    "inversion.prior.public_classes must be disjoint from the private data.classes"
                    + (f"; shared: {overlap}" if overlap else "; set data.classes")
                )
        for key in ("sensitivity", "dp_audit"):
            block = getattr(self, key)
            unknown = sorted(set((block and block.targets) or []) - set(names))
            if unknown:
                raise ValueError(f"{key}.targets: unknown target(s) {unknown}; known: {names}")
        return self

    def train_for(self, target: TargetConfig) -> TrainConfig:
        return self.train.model_copy(update=target.train)

    def model_for(self, target: TargetConfig) -> Component:
        return target.model or self.model
