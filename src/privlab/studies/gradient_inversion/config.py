"""The ``gradient_inversion:`` section: federated clients' updates inverted by the server
(Liu et al. 2025).

A study attacks the updates that clients of one federated task send to an honest-but-curious
server: for every client setting (batch size B, local steps) and every defence at every strength
of its sweep, ``batches`` client batches drawn from the private members are turned into the
server's observations, every attack inverts them, and the reconstructions are scored against
the (optimally matched) private images. The same defence is then used for FedAvg training of
the task, which gives its utility loss; defences are compared at equal utility loss.

Like every config it is data: YAML checked key by key, a typo is an error naming it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from privlab.config.base import (
    AttackConfig,
    Component,
    DataConfig,
    Swept,
    _check_family,
    _check_name,
    _Strict,
    check_unique,
)
from privlab.federated.convergence import Convergence
from privlab.registry import ATTACKS, DATASETS, MODELS


class ClientSetting(_Strict):
    """What one client does with its private batch: ``local_steps`` SGD steps at ``lr`` on
    mini-batches of ``local_batch`` (the whole batch when null) — one step is the plain
    gradient, several are FedAvg's local aggregation."""

    batch_size: int = Field(4, ge=1)
    local_steps: int = Field(1, ge=1)
    lr: float = Field(0.1, gt=0)
    local_batch: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ClientSetting:
        if self.local_batch is not None and self.local_batch > self.batch_size:
            raise ValueError(
                f"local_batch ({self.local_batch}) must not exceed batch_size ({self.batch_size})"
            )
        return self

    @property
    def label(self) -> str:
        text = f"B={self.batch_size}"
        if self.local_steps > 1:
            text += f", {self.local_steps} local steps"
            if self.local_batch is not None:
                text += f" of {self.local_batch}"
        return text

    def schedule(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~privlab.federated.defences.defended_update`."""
        return {"local_steps": self.local_steps, "lr": self.lr, "local_batch": self.local_batch}


class DefenceSweep(Swept):
    """A defence (``DEFENCES`` name, fixed ``params``) and optionally one parameter swept over
    ``sweep: {parameter: [values]}``, values ordered from the weakest to the strongest defence
    (e.g. pruning ``p: [0.5, 0.9, 0.99]``, quantisation ``bits: [8, 4, 2]``): the order, not
    the value, is the defence's strength when utility losses are matched."""


class LrTuning(_Strict):
    """The server learning rate tuned per point of the listed ``defences`` (Liu et al. compare
    defences at their utility cost, which for DP-SGD clients depends on the step size: clipping
    shrinks the update, so the base rate under-trains). For every factor f of ``factors`` a
    FedAvg run with server rate f·base (base: ``server_lr``, else the client's ``lr``) trains
    on the bundle's *population* (public data, disjoint from the clients' members and so from
    every attacked batch: tuning costs no privacy) for the rounds of the point's own run; the
    factor with the least final training loss there is used for the run on the members. The
    client's computation, hence what the server observes and the attacks invert, is unchanged
    (with one local step the server rate is the whole step size)."""

    factors: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0], min_length=1)
    defences: list[str] = Field(default_factory=lambda: ["dp"], min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LrTuning:
        from privlab.federated.defences import DEFENCES

        if any(not (f > 0 and math.isfinite(f)) for f in self.factors):
            raise ValueError(f"factors must be positive, got {self.factors}")
        check_unique([str(f) for f in self.factors], "lr_tuning factors")
        for i, name in enumerate(self.defences):
            _check_name(DEFENCES, name, f"lr_tuning.defences.{i}")
            if name == "none":
                raise ValueError("lr_tuning.defences: the undefended baseline keeps the base rate")
        return self


class FederatedUtilityConfig(_Strict):
    """FedAvg training of the task under each defence (the members split into ``clients``
    IID shards; every round ``participation``·clients clients send a defended update of a batch
    of the client setting's size). Utility loss = final training loss with the defence minus
    without it (Liu et al. Fig. 3), the accuracy drop beside it; losses within the spread of
    ``noise_seeds`` further undefended runs count as none.

    How long: ``until: rounds`` (the default) runs every FedAvg for ``rounds`` rounds;
    ``until: converged`` runs the undefended FedAvg until its training loss has not improved
    by ``tolerance`` nats for ``patience`` rounds (at most ``max_rounds``;
    :mod:`privlab.federated.convergence`), and every other run of the setting (defended, noise
    seeds, learning-rate tuning) for the rounds it took: defences are compared at equal
    training effort, the undefended model converged. ``lr_tuning``: see :class:`LrTuning`.
    """

    clients: int = Field(10, ge=1)
    until: Literal["rounds", "converged"] = "rounds"
    rounds: int = Field(50, ge=1)  # until: rounds
    max_rounds: int = Field(1000, ge=1)  # until: converged
    patience: int = Field(50, ge=1)
    tolerance: float = Field(1e-3, ge=0)
    participation: float = Field(1.0, gt=0, le=1)
    server_lr: float | None = Field(None, gt=0)
    #: extra undefended runs (other seeds) whose spread is the utility-loss noise floor
    noise_seeds: int = Field(2, ge=0)
    lr_tuning: LrTuning | None = None

    @model_validator(mode="after")
    def _check(self) -> FederatedUtilityConfig:
        fixed, converging = {"rounds"}, {"max_rounds", "patience", "tolerance"}
        unused = fixed if self.until == "converged" else converging
        stray = sorted(unused & self.model_fields_set)
        if stray:
            length = "max_rounds, patience, tolerance" if self.until == "converged" else "rounds"
            raise ValueError(
                f"until: {self.until} does not use {', '.join(stray)} (its length: {length})"
            )
        return self

    def stop(self) -> int | Convergence:
        """The undefended run's length: a number of rounds or the convergence rule."""
        if self.until == "rounds":
            return self.rounds
        return Convergence(
            max_rounds=self.max_rounds, patience=self.patience, tolerance=self.tolerance
        )

    def cache_key(self) -> dict[str, Any]:
        """What a FedAvg unit depends on (the fields a fixed-rounds config had before
        convergence and tuning existed, so units cached then are still found)."""
        out = self.model_dump(mode="json", exclude={"noise_seeds", "lr_tuning"})
        if self.until == "rounds":
            for k in ("until", "max_rounds", "patience", "tolerance"):
                out.pop(k)
        else:
            out.pop("rounds")
        return out


class GradientInversionConfig(_Strict):
    """One federated task attacked under several defences (see the module docstring).

    ``pretrain_epochs``: the global model is attacked at its initialisation (0, the first round)
    or after that many epochs of natural training on the population (a later round; the
    clients' members are never used). ``examples``: reconstructions of the first batch kept per
    point for the report's grids.
    """

    data: DataConfig = DataConfig(name="mnist5k")
    model: Component = Component(name="cnn_small")
    pretrain_epochs: int = Field(0, ge=0)
    clients: list[ClientSetting] = Field(default_factory=lambda: [ClientSetting()], min_length=1)
    batches: int = Field(2, ge=1)
    attacks: list[AttackConfig] = Field(min_length=1)
    defences: list[DefenceSweep] = Field(
        default_factory=lambda: [DefenceSweep(name="none")], min_length=1
    )
    utility: FederatedUtilityConfig | None = FederatedUtilityConfig()
    examples: int = Field(4, ge=0)
    matched_levels: int = Field(5, ge=1)  # utility-loss levels of the matched comparison

    @model_validator(mode="after")
    def _check(self) -> GradientInversionConfig:
        from privlab.federated.defences import DEFENCES

        _check_name(DATASETS, self.data.name, "data.name")
        _check_name(MODELS, self.model.name, "model.name")
        for i, a in enumerate(self.attacks):
            _check_family(a.name, "gradient_inversion", f"attacks.{i}.name")
            try:
                ATTACKS.build(a.name, **a.params)
            except (TypeError, ValueError) as err:
                raise ValueError(f"attacks.{i}: {err}") from None
        check_unique([a.display for a in self.attacks], "gradient-inversion attack labels")
        for i, d in enumerate(self.defences):
            _check_name(DEFENCES, d.name, f"defences.{i}.name")
            for _, params, _ in d.points():
                try:
                    DEFENCES.build(d.name, **params)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"defences.{i}: {err}") from None
        check_unique([d.display for d in self.defences], "defence labels", " (set 'label')")
        check_unique([c.label for c in self.clients], "client settings")
        return self
