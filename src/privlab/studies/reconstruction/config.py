"""The ``reconstruction:`` section: reconstruction from released weights.

Two adversaries, each optional: the weak adversary of Maciazek & Allison on transfer-learned
heads (shadow heads → reconstructor → TPR/FPR as a hypothesis test), studied over a list of
``variants`` (training-set size N, number of shadows, σ_init, DP-SGD ε), and the informed
adversary of Balle et al. (closed-form attack on a convex model, RecoNN on a small MLP with
and without the initialisation, DP-SGD as mitigation against the ReRo bound). Like every config
it is data: YAML checked key by key, a typo is an error naming it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from privlab.config.base import Component, DataConfig, _Strict, check_unique, dataset_name
from privlab.studies.reconstruction.transfer import TRANSFER_DATASETS
from privlab.training.heads import HeadSpec

#: a transfer-learned head and its recipe: the training module's own model
HeadConfig = HeadSpec


class DPConfig(_Strict):
    """DP-SGD heads: the noise multiplier spending ``epsilon`` at δ = N^−1.1 (Opacus' RDP
    accountant, Poisson sampling with B = N − 1), per-sample clipping norm ``clip``."""

    epsilon: float = Field(gt=0)
    clip: float = Field(4.0, gt=0)


class ReconstructorSettings(_Strict):
    """The reconstructor network and its training (003 §3.1, App. B)."""

    kind: Literal["residual", "mlp"] = "mlp"
    width: int = Field(512, ge=1)
    blocks: int = Field(2, ge=1)
    conditional: bool = True
    lr: float = Field(2e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(1, ge=1)
    alpha: float = Field(100.0, gt=0)
    eval_every: int = Field(500, ge=1)
    patience: int = Field(5, ge=1)
    #: "bfloat16": mixed-precision training steps (the forward pass in bfloat16, the weights,
    #: Adam, the loss and every evaluation in float32)
    precision: Literal["float32", "bfloat16"] = "float32"


class WeakVariant(_Strict):
    """One point of a study: overrides of the weak adversary's defaults."""

    name: str
    n: int | None = Field(None, ge=1)
    shadows: int | None = Field(None, ge=1)
    sigma_init: float | None = Field(None, ge=0)
    dp: DPConfig | None = None
    reconstructor_epochs: int | None = Field(None, ge=1)


class WeakAdversaryConfig(_Strict):
    """Maciazek & Allison's weak adversary on heads of the transfer setting.

    The transfer pool (the half of ``dataset`` the base network never saw) is split, stratified,
    into the attacker's training prior (``prior_split``) and a disjoint validation prior: the
    shadows of each come from Algorithm 1 on it. The validation shadows stand in for released
    models (TPR), null weights N(θ̄, Cov) of the training shadows give the FPR.
    ``task: one_vs_rest`` is the unbalanced face-recognition variant: the pool labels are
    ``identities`` writing styles per digit, heads are binary (``head.outputs: 1``).
    """

    dataset: str = "mnist5k"  # a DATASETS name
    pretrain_epochs: int = Field(20, ge=1)
    task: Literal["balanced", "one_vs_rest"] = "balanced"
    identities: int = Field(4, ge=1)
    prior_split: float = Field(0.8, gt=0, lt=1)
    head: HeadConfig = HeadConfig()
    n: int = Field(10, ge=1)
    shadows: int = Field(100_000, ge=1)
    val_shadows: int = Field(2_000, ge=1)
    shard_size: int = Field(10_000, ge=1)
    reconstructor: ReconstructorSettings = ReconstructorSettings()
    dp: DPConfig | None = None
    variants: list[WeakVariant] = Field(default_factory=list)
    examples: int = Field(8, ge=0)  # reconstructions shown beside their nearest training image
    #: the nearest-neighbour threshold: ``dataset`` as the paper defines it (the whole dataset
    #: split into train and validation), ``priors`` (between the attacker's two priors, a few
    #: thousand images: larger), or a number
    tau: Literal["dataset", "priors"] | float = "dataset"
    #: keep the shadow-head shards in the cache after a variant's result is stored (false: a
    #: million heads take 10 GB; a re-run with other settings then regenerates them)
    keep_shadows: bool = True

    _dataset = dataset_name("dataset")

    @model_validator(mode="before")
    @classmethod
    def _backend_moved(cls, data: object) -> object:
        if isinstance(data, dict) and "backend" in data:
            raise ValueError(
                "`backend` moved to the config's header (`backend: ray`, or `privlab run "
                "--backend ray`): it now runs every study's units, not only the shadow heads"
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> WeakAdversaryConfig:
        if self.dataset not in TRANSFER_DATASETS:
            raise ValueError(
                f"dataset {self.dataset!r}: the transfer setting splits an embedded dataset: "
                f"{', '.join(TRANSFER_DATASETS)}"
            )
        check_unique([v.name for v in self.variants], "variant names")
        if self.task == "one_vs_rest" and self.head.outputs != 1:
            raise ValueError("task one_vs_rest needs a binary head: set head.outputs: 1")
        return self

    def resolved_variants(self) -> list[WeakVariant]:
        return self.variants or [WeakVariant(name="default")]


class ClosedFormConfig(_Strict):
    """Exact recovery from L2-regularised softmax regression (Balle et al. §IV)."""

    fixed: int = Field(300, ge=1)  # |D₋|
    targets: int = Field(20, ge=1)  # released models attacked, one unknown point each
    l2: float = Field(1e-3, gt=0)


class ReconNNSettings(_Strict):
    width: int = Field(512, ge=1)
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)


class InformedAdversaryConfig(_Strict):
    """Balle et al.'s informed adversary on ``dataset`` (digits by default).

    D₋ holds ``fixed`` known members; the adversary trains ``shadows`` models on D₋ ∪ {z} for
    candidates z from its prior, and attacks ``victims`` released models trained on D₋ plus an
    unknown point of the same prior. ``known_init``: the settings studied (the adversary knows
    the released model's initialisation, or not). ``epsilons``: DP-SGD runs (known
    initialisation) whose success is compared with the ReRo bound.
    """

    dataset: str = "digits"  # a DATASETS name
    fixed: int = Field(100, ge=1)
    shadows: int = Field(800, ge=1)
    victims: int = Field(100, ge=1)
    head: HeadConfig = HeadConfig(hidden=16, sigma_init=0.1, lr=0.5, weight_decay=0.0, epochs=100)
    reconnn: ReconNNSettings = ReconNNSettings()
    known_init: list[bool] = Field(default_factory=lambda: [True, False], min_length=1)
    epsilons: list[float] = Field(default_factory=list)
    #: the DP-SGD arm's model: None (default) is ``head``, the RecoNN arm's MLP
    dp_head: HeadConfig | None = None
    dp_clip: float = Field(1.0, gt=0)
    closed_form: ClosedFormConfig | None = ClosedFormConfig()

    _dataset = dataset_name("dataset")

    @model_validator(mode="after")
    def _check(self) -> InformedAdversaryConfig:
        if any(e <= 0 for e in self.epsilons):
            raise ValueError("epsilons must be > 0")
        if (self.dp_head or self.head).outputs < 2 and self.epsilons:
            raise ValueError("DP-SGD heads must be cross-entropy heads (outputs ≥ 2)")
        return self


class ReleasedHeadConfig(_Strict):
    """The released model is a head (its module ``module``, an ``nn.Linear`` or Linear → ReLU →
    Linear) trained on frozen features of the rest of the model, as ``train`` says (full-batch
    gradient descent; its outputs and width are read off the module): Maciazek & Allison's weak
    adversary, its shadow heads trained the same way on sets of the attacker's population of
    the members' size and class balance."""

    module: str = Field(min_length=1)
    train: HeadConfig = HeadConfig()
    shadows: int = Field(20_000, ge=1)
    val_shadows: int = Field(1_000, ge=1)
    shard_size: int = Field(10_000, ge=1)
    prior_split: float = Field(0.8, gt=0, lt=1)
    reconstructor: ReconstructorSettings = ReconstructorSettings()


class ReleasedModelConfig(_Strict):
    """A released model's own members reconstructed from its weights (the audit of a given
    model, :mod:`privlab.auditing`).

    The informed adversary of Balle et al. knows every member but the one it attacks and the
    training objective, mean cross-entropy + (``l2``/2)·‖θ‖² (the bias included when
    ``bias_l2``, as torch's ``weight_decay`` does). A softmax regression at that optimum gives
    each member back in closed form; the further the weights are from it, the weaker the
    attack (the report gives the distance). Up to ``targets`` members are attacked (a seeded
    sample when there are more); any other model is reported as not applicable, with why.
    With ``head``, the model is a head over frozen features and the weak adversary attacks it.
    """

    data: DataConfig  # members: the released model's training data
    model: Component  # the released model itself (e.g. user_model with given: true)
    l2: float = Field(0.0, ge=0)
    bias_l2: bool = True
    targets: int = Field(1_000, ge=1)
    examples: int = Field(8, ge=0)
    #: the released model is a head on frozen features: the weak adversary too
    head: ReleasedHeadConfig | None = None


class ReconstructionConfig(_Strict):
    """The ``reconstruction:`` section: the weak and/or the informed adversary, on heads and
    models the study trains, and/or on a released model (``released_model``)."""

    weak_adversary: WeakAdversaryConfig | None = None
    informed_adversary: InformedAdversaryConfig | None = None
    released_model: ReleasedModelConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> ReconstructionConfig:
        if (self.weak_adversary, self.informed_adversary, self.released_model) == (None,) * 3:
            raise ValueError(
                "the reconstruction section needs weak_adversary, informed_adversary or "
                "released_model"
            )
        return self
