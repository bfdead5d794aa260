"""Defences against gradient inversion: what changes between a client's data and the server.

A defence is a frozen keyword-only dataclass whose fields are its strength parameters,
registered in ``DEFENCES``. Its :meth:`Defence.apply` takes the client's batch and the client's
schedule (``local_steps``, ``lr``, ``local_batch``: the same options as
:func:`~privlab.federated.client.client_update`) and returns the
:class:`~privlab.federated.observation.GradientObservation` the honest-but-curious server
receives. Two kinds exist (Liu et al. 2025 compare both):

* transforms of the client's final update (``acts_on_update = True``: none, pruning,
  quantisation, additive Gaussian noise). ``apply`` runs the ordinary client update and
  passes its tensors through :meth:`Defence.transform`; :meth:`Defence.defend` applies the
  same transform to an observation already computed (one clean gradient, many strengths).
* changes to the client's computation (``acts_on_update = False``: DP-SGD clips and noises
  every local step's per-example gradients; secure aggregation mixes several clients' updates).
  They need the data, so they override ``apply`` and refuse ``defend``.

Larger batches and several local steps (the paper's "local aggregation") are client settings,
not defences: a config states them next to the defence, e.g.
``{defence: {name: pruning, p: 0.99}, client: {batch_size: 4, local_steps: 5, lr: 0.1}}``, and
the experiment passes ``client`` to :func:`defended_update` (with the defence "none" for the
undefended baseline).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from privlab.federated.client import client_update
from privlab.federated.observation import GradientObservation
from privlab.registry import DEFENCES

__all__ = ["DEFENCES", "Defence", "defended_update"]

Gradients = dict[str, torch.Tensor]


def require_generator(generator: torch.Generator | None, who: str) -> torch.Generator:
    """Randomised defences draw only from an explicit, seeded generator (reproducibility)."""
    if generator is None:
        raise ValueError(f"the {who} defence is randomised: pass a seeded torch.Generator")
    return generator


@dataclasses.dataclass(frozen=True, kw_only=True)
class Defence:
    """Base class: no defence. Subclasses are frozen dataclasses of their parameters."""

    name: ClassVar[str] = "defence"
    acts_on_update: ClassVar[bool] = True  # a transform of the final update (see module doc)

    def apply(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        local_steps: int = 1,
        lr: float = 0.1,
        local_batch: int | None = None,
    ) -> GradientObservation:
        """The observation the server receives from a client holding (x, y) under this
        defence. The model is left untouched (weights, ``.grad`` and mode)."""
        obs = client_update(model, x, y, local_steps=local_steps, lr=lr, local_batch=local_batch)
        return self.defend(obs, generator=generator)

    def defend(
        self, obs: GradientObservation, *, generator: torch.Generator | None = None
    ) -> GradientObservation:
        """Apply the defence to an update already computed (update transforms only)."""
        if not self.acts_on_update:
            raise ValueError(
                f"the {self.name} defence changes the client's computation, not its final "
                "update: call apply(model, x, y, ...) instead of defend(obs)"
            )
        out = self.transform(dict(obs.gradients), generator=generator)
        return obs.with_gradients(out)

    def transform(
        self, gradients: Gradients, *, generator: torch.Generator | None = None
    ) -> Gradients:
        """The defended tensors (same names and shapes); the identity here."""
        return {n: g.detach().clone() for n, g in gradients.items()}

    def training_defence(self) -> Defence:
        """What each client applies during federated training (itself, except secure
        aggregation, whose aggregation is the server's averaging itself)."""
        return self

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def defended_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    defence: Defence | None = None,
    *,
    local_steps: int = 1,
    lr: float = 0.1,
    local_batch: int | None = None,
    generator: torch.Generator | None = None,
) -> GradientObservation:
    """The observation the server sees from a client holding (x, y) under ``defence`` (no
    defence when None), with the client's schedule as in
    :func:`~privlab.federated.client.client_update`.

    DP-SGD clips and noises every local step's gradient; pruning, quantisation and additive
    noise act on the final update; secure aggregation splits (x, y) among its clients and the
    server sees their aggregate. Randomised defences need ``generator``.
    """
    chosen = defence if defence is not None else _no_defence()
    if not isinstance(chosen, Defence):
        raise TypeError(f"defence must be a Defence (see DEFENCES), got {type(chosen).__name__}")
    return chosen.apply(
        model, x, y, generator=generator, local_steps=local_steps, lr=lr, local_batch=local_batch
    )


def _no_defence() -> Defence:
    defence: Defence = DEFENCES.build("none")
    return defence
