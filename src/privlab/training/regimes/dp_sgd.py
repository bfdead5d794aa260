"""DP-SGD through Opacus (Abadi et al. 2016): per-sample clipping, Gaussian noise, Poisson
sampling; (ε, δ) from Opacus' accountant, reported in the target's ``privacy`` block.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.registry import REGIMES
from privlab.training.regime import Regime


@REGIMES.register("dp_sgd")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DPSGD(Regime):
    """Differentially private SGD. Give ``noise_multiplier`` σ, or ``target_epsilon`` to let
    Opacus choose σ for the planned epochs. ``delta`` defaults to 1/N^1.1 (SPEC Appendix Q.10).
    """

    name = "dp_sgd"
    noise_multiplier: float | None = 1.0
    max_grad_norm: float = 1.0
    target_epsilon: float | None = None
    delta: float | None = None
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        from opacus import PrivacyEngine
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
        engine = PrivacyEngine(accountant=self.accountant)
        with warnings.catch_warnings():  # Opacus warns about secure RNG; seeded runs want it off
            warnings.simplefilter("ignore")
            if self.target_epsilon is not None:
                model, optimizer, loader = engine.make_private_with_epsilon(
                    module=model,
                    optimizer=optimizer,
                    data_loader=loader,
                    target_epsilon=self.target_epsilon,
                    target_delta=delta,
                    epochs=epochs,
                    max_grad_norm=self.max_grad_norm,
                )
            else:
                model, optimizer, loader = engine.make_private(
                    module=model,
                    optimizer=optimizer,
                    data_loader=loader,
                    noise_multiplier=self.noise_multiplier,
                    max_grad_norm=self.max_grad_norm,
                    poisson_sampling=True,
                )
        self._state.update(
            engine=engine, delta=delta, optimizer=optimizer, sample_rate=1.0 / len(loader)
        )
        return model, optimizer, loader

    def finalize(self, model: nn.Module) -> nn.Module:
        inner = getattr(model, "_module", model)  # unwrap Opacus' GradSampleModule
        close = getattr(model, "_close", None)  # remove Opacus' hooks from the inner module
        if callable(close):
            close()
        return inner

    def summary(self) -> dict[str, Any]:
        engine = self._state.get("engine")
        if engine is None:
            return {}
        delta = self._state["delta"]
        optimizer = self._state["optimizer"]
        return {
            "mechanism": "dp_sgd",
            "accountant": self.accountant,
            "epsilon": float(engine.get_epsilon(delta)),
            "delta": float(delta),
            "noise_multiplier": float(optimizer.noise_multiplier),
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": float(self._state["sample_rate"]),
            "steps": int(engine.accountant.history[-1][2]) if engine.accountant.history else 0,
        }
