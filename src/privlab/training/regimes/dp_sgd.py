"""DP-SGD through Opacus (Abadi et al. 2016): per-sample clipping, Gaussian noise, Poisson
sampling; (ε, δ) from Opacus' accountant, reported in the target's ``privacy`` block. The
clipping, noise, sampling and accounting rules are :mod:`privlab.training.dp`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.registry import REGIMES
from privlab.training import dp
from privlab.training.regime import Regime


@REGIMES.register("dp_sgd")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DPSGD(Regime):
    """Differentially private SGD. Give ``noise_multiplier`` σ, or ``target_epsilon`` to let
    Opacus choose σ for the planned epochs. ``delta`` defaults to 1/N^1.1 (SPEC Appendix Q.10).
    ``accountant``: ``rdp`` or ``prv`` (``gdp`` under-reports ε and is refused). A step whose
    Poisson batch is empty adds the noise alone and is accounted.
    """

    name = "dp_sgd"
    resumable = False  # the accountant's steps live in Opacus
    noise_multiplier: float | None = 1.0
    max_grad_norm: float = 1.0
    target_epsilon: float | None = None
    delta: float | None = None
    accountant: Literal["rdp", "prv"] = "rdp"
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")
        dp.check_accountant(self.accountant)

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise ValueError(
                "model is not compatible with DP-SGD per-sample gradients: "
                + "; ".join(str(e) for e in errors)
                + " (use an architecture without BatchNorm, e.g. batch_norm: false)"
            )
        n = len(loader.dataset)  # type: ignore[arg-type]
        delta = self.delta if self.delta is not None else 1.0 / n**1.1
        sample_rate = 1.0 / len(loader)  # Opacus' Poisson rate for this loader
        sigma = self.noise_multiplier
        if sigma is None:
            assert self.target_epsilon is not None
            sigma = dp.noise_multiplier_for(
                self.target_epsilon, delta, sample_rate, epochs=epochs, accountant=self.accountant
            )
        engine, model, optimizer, loader = dp.make_private(
            model,
            optimizer,
            loader,
            noise_multiplier=sigma,
            max_grad_norm=self.max_grad_norm,
            accountant=self.accountant,
        )
        self._state.update(engine=engine, delta=delta, optimizer=optimizer, sample_rate=sample_rate)
        return model, optimizer, loader

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """An empty Poisson batch is a step: the noise alone, counted by the accountant."""
        dp.noise_only_step(optimizer)  # type: ignore[arg-type]

    def finalize(self, model: nn.Module) -> nn.Module:
        inner = getattr(model, "_module", model)  # unwrap Opacus' GradSampleModule
        close = getattr(model, "_close", None)  # remove Opacus' hooks from the inner module
        if callable(close):
            close()
        return inner

    def planned_summary(self, n: int, *, batch_size: int, epochs: int) -> dict[str, Any]:
        """The ``privacy`` block this regime promises for ``epochs`` over ``n`` examples in
        batches of ``batch_size`` (the loader's ⌈n/B⌉ Poisson batches per epoch, as
        :meth:`prepare` sets them): a given model trained with this recipe claims it."""
        batches = -(-n // batch_size)
        delta = self.delta if self.delta is not None else 1.0 / n**1.1
        sigma = self.noise_multiplier
        if sigma is None:
            assert self.target_epsilon is not None
            sigma = dp.noise_multiplier_for(
                self.target_epsilon, delta, 1.0 / batches, epochs=epochs,
                accountant=self.accountant,
            )  # fmt: skip
        return dp.privacy_summary(
            accountant=self.accountant, noise_multiplier=sigma, sample_rate=1.0 / batches,
            steps=epochs * batches, delta=delta, max_grad_norm=self.max_grad_norm,
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        engine = self._state.get("engine")
        if engine is None:
            return {}
        return dp.privacy_summary(
            accountant=self.accountant,
            noise_multiplier=self._state["optimizer"].noise_multiplier,
            sample_rate=self._state["sample_rate"],
            steps=dp.accounted_steps(engine.accountant),
            delta=self._state["delta"],
            max_grad_norm=self.max_grad_norm,
        )
