"""The Regime interface: how a training recipe plugs into the one loop.

A regime is a frozen dataclass of hyperparameters (keyword-only, paper defaults) with hooks:

* ``adapt_model(model)`` changes the architecture (a VIB head, a pixel mask); ``train`` calls
  it, and so does building a model to load cached weights into, so it must be idempotent;
* ``prepare(model, optimizer, loader)`` may wrap all three (DP-SGD wraps them with Opacus);
* ``start_epoch(epoch, epochs)`` sees the schedule (ramps, delayed smoothing);
* ``loss(model, x, y)`` returns the batch loss to minimise (adversarial regimes perturb here);
  the loop calls ``loss_at(model, x, y, index)``, which is ``loss`` unless a regime treats
  some training points differently (``index``: the batch's positions in the training set);
* ``after_step(model)`` runs after every optimiser step (hard thresholds, projections);
* ``empty_step(model, optimizer)`` handles an empty batch, which only a Poisson-sampling
  loader draws: nothing by default; DP-SGD takes the noise-only step (a regime that steps
  here calls its own ``after_step``);
* ``finalize(model)`` returns a plain ``nn.Module`` to store and attack;
* ``summary()`` reports what the report's ``privacy`` block should show (e.g. DP's ε).

``resumable``: the model, the optimiser, the schedule and the random streams are all the state
training carries from one epoch to the next, so an epoch checkpoint resumes it exactly; False
for a regime with state of its own (DP-SGD's accountant, Trap-MID's discriminator).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from privlab.data.bundle import Split


@dataclasses.dataclass(frozen=True, kw_only=True)
class Regime:
    name: ClassVar[str] = "regime"
    #: value range perturbed inputs are clipped to (the runner sets it from the bundle)
    clip: tuple[float, float] = (0.0, 1.0)
    #: the regime pre-trains on public data (TL-DMI); the runner then passes it as ``_public``
    uses_public_data: ClassVar[bool] = False
    #: an epoch checkpoint holds all its training state (module docstring)
    resumable: ClassVar[bool] = True
    _public: Split | None = dataclasses.field(default=None, repr=False, compare=False)

    def budget(self) -> tuple[float | None, str]:
        """(ε, norm) the model is trained to resist; ε is None for non-robust regimes.

        Regimes with a perturbation budget declare fields ``eps`` (and optionally ``norm``).
        """
        return getattr(self, "eps", None), getattr(self, "norm", "linf")

    def adapt_model(self, model: nn.Module) -> nn.Module:
        return model

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        return model, optimizer, loader

    def start_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def loss_at(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """The loss of a batch whose rows are training points ``index`` (default: ``loss``)."""
        return self.loss(model, x, y)

    def after_step(self, model: nn.Module) -> None:
        pass

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """An empty batch: no step (shuffled loaders never draw one)."""

    def train_labels(self, y: torch.Tensor) -> torch.Tensor:
        """The labels the model is actually trained on for training labels ``y`` (in order)."""
        return y

    def finalize(self, model: nn.Module) -> nn.Module:
        return model

    def summary(self) -> dict[str, Any]:
        return {}

    def planned_summary(self, n: int, *, batch_size: int, epochs: int) -> dict[str, Any]:
        """The ``summary`` this regime promises for ``epochs`` over ``n`` examples in batches
        of ``batch_size``, before any training (a given model trained with it claims it):
        nothing for a regime without a guarantee."""
        return {}

    def params(self) -> dict[str, Any]:
        """Hyperparameters as plain data (hashing, reports)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }  # private fields hold run state, not settings


class attack_mode:
    """Context manager: eval mode (no dropout/BN updates) while crafting perturbations."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)
