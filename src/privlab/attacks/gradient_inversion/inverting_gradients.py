"""Inverting Gradients (Geiping, Bauermeister, Dröge and Moeller, NeurIPS 2020).

With labels ŷ from the last layer (iDLG), the dummy batch x̂ minimises

    1 − ⟨∇_θ L(x̂, ŷ), G⟩ / (‖∇_θ L(x̂, ŷ)‖·‖G‖) + λ_TV·TV(x̂)     subject to x̂ ∈ [lo, hi]ᴰ.

The cosine ignores the update's magnitude (a trained model's gradients are small, and it is
the direction that carries the image); TV favours piecewise-smooth images. The optimiser is
Adam on the *sign* of the input gradient (robust to the badly scaled second derivatives of
ReLU networks), with the learning rate divided by 10 at 3/8, 5/8 and 7/8 of the iterations,
and x̂ projected back onto the value range after every step. Several random starts are run and
the one with the lowest cosine matching loss is returned.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import (
    GradientInversionAttack,
    GradientInversionResult,
    MatchingLoss,
    gradient_matching_loss,
    hard_label_loss,
    model_parameters,
    observed_tensors,
    random_images,
    simulated_update,
    total_variation,
)
from privlab.federated.observation import GradientObservation
from privlab.registry import ATTACKS

#: x ↦ (what the search minimises, what it records and scores a restart by)
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@ATTACKS.register("inverting_gradients")
@dataclasses.dataclass(kw_only=True)
class InvertingGradients(GradientInversionAttack):
    """Geiping et al.: cosine gradient matching + TV, signed Adam, restarts (iDLG labels)."""

    name: ClassVar[str] = "inverting_gradients"
    iterations: int = 500
    restarts: int = 2
    lr: float = 0.1
    tv: float = 1e-2  # λ_TV
    loss: MatchingLoss = "cosine"
    signed: bool = True  # Adam on sign(∇_x̂); False: on the raw gradient

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1:
            raise ValueError("iterations and restarts must be ≥ 1")
        if not self.lr > 0 or self.tv < 0:
            raise ValueError(f"need lr > 0 and tv ≥ 0, got lr={self.lr}, tv={self.tv}")

    def milestones(self) -> list[int]:
        """Iterations after which the learning rate drops tenfold (3/8, 5/8, 7/8)."""
        return [round(self.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]

    def _invert(
        self,
        model: nn.Module,
        obs: GradientObservation,
        input_shape: tuple[int, ...],
        num_classes: int,
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        labels = self.labels_for(model, obs, recover=True)
        assert labels is not None
        loss_fn = hard_label_loss(labels)
        observed = observed_tensors(model, obs)
        params = model_parameters(model)

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            match = gradient_matching_loss(
                simulated_update(model, params, x, loss_fn, obs), observed, self.loss
            )
            return (match + self.tv * total_variation(x) if self.tv else match), match

        return self.search(objective, labels, input_shape, value_range, seed)

    def search(
        self,
        objective: Objective,
        labels: torch.Tensor,
        input_shape: tuple[int, ...],
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        """The batch x ∈ [lo, hi] (one image per label) that minimises ``objective(x)[0]``:
        from ``restarts`` random starts drawn from ``seed``, ``iterations`` steps each of Adam
        on the sign of the gradient (``signed``) with the lr dropping tenfold at the
        milestones, x projected back onto the range after every step. ``objective(x)[1]`` is
        what is recorded: every step's value goes into the history, and its value at a
        restart's final x is the restart's score. The result is the restart with the lowest
        score (a non-finite one counts as +∞)."""
        gen = torch.Generator().manual_seed(seed)
        lo, hi = value_range
        best: tuple[float, torch.Tensor, list[float]] | None = None
        for _ in range(self.restarts):
            x = random_images(len(labels), input_shape, value_range, gen).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=self.lr)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones(), gamma=0.1)
            history: list[float] = []
            for _ in range(self.iterations):
                opt.zero_grad()
                minimised, recorded = objective(x)
                (grad,) = torch.autograd.grad(minimised, [x])
                x.grad = grad.sign() if self.signed else grad
                opt.step()
                sched.step()
                with torch.no_grad():
                    x.clamp_(lo, hi)
                history.append(float(recorded.detach()))
            final_x = x.detach().clone().requires_grad_(True)
            final = float(objective(final_x)[1].detach())
            if not math.isfinite(final):
                final = math.inf
            if best is None or final < best[0]:
                best = (final, final_x.detach(), history)
        assert best is not None
        loss, images, history = best
        return GradientInversionResult(
            images=images, labels=labels, history=history, matching_loss=loss
        )
