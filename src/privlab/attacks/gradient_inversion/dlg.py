"""Deep Leakage from Gradients (Zhu, Liu and Han, NeurIPS 2019).

Dummy inputs x̂ (and, unless the labels are known or recovered, dummy label logits ŷ) are fitted
to the observed update G by L-BFGS on the squared distance

    min_{x̂, ŷ}  Σ_l ‖∇_{θ_l} L(f_θ(x̂), softmax(ŷ)) − G_l‖².

iDLG (Zhao et al. 2020) first reads the labels off the last layer's gradient, which removes ŷ
and makes the fit much more reliable; that is the default (``label_recovery``). The problem is
non-convex and L-BFGS can diverge, so ``restarts`` independent starts are run and the one with
the smallest matching loss is kept. The objective needs second derivatives of the network in
its inputs: with ReLU networks they are piecewise constant, which works for small MLPs and CNNs
but is why the original paper swapped ReLU for sigmoid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from privlab.attacks.gradient_inversion.base import (
    GradientInversionAttack,
    GradientInversionResult,
    gradient_matching_loss,
    hard_label_loss,
    model_parameters,
    observed_tensors,
    random_images,
    simulated_update,
    soft_label_loss,
)
from privlab.federated.observation import GradientObservation
from privlab.registry import ATTACKS


@ATTACKS.register("dlg")
@dataclasses.dataclass(kw_only=True)
class DLG(GradientInversionAttack):
    """DLG: L-BFGS on the L2 distance between simulated and observed gradients (iDLG labels)."""

    name: ClassVar[str] = "dlg"
    steps: int = 30  # L-BFGS outer steps, each of at most ``max_iter`` iterations
    max_iter: int = 20
    lr: float = 1.0
    history_size: int = 100
    label_recovery: bool = True  # iDLG labels; False: learn soft labels jointly (original DLG)
    restarts: int = 1
    tolerance: float = 1e-12  # stop a start once its matching loss is below this

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_iter < 1 or self.restarts < 1:
            raise ValueError("steps, max_iter and restarts must be ≥ 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def _invert(
        self,
        model: nn.Module,
        obs: GradientObservation,
        input_shape: tuple[int, ...],
        num_classes: int,
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        labels = self.labels_for(model, obs, self.label_recovery)
        observed = observed_tensors(model, obs)
        params = model_parameters(model)
        gen = torch.Generator().manual_seed(seed)
        best: tuple[float, torch.Tensor, torch.Tensor, list[float]] | None = None
        for _ in range(self.restarts):
            x = random_images(obs.batch_size, input_shape, value_range, gen)
            label_logits = (
                torch.randn(obs.batch_size, num_classes, generator=gen, device="cpu").to(x.device)
                if labels is None
                else None
            )
            images, found, history = self._fit(
                model, params, obs, observed, x, labels, label_logits
            )
            images = images.clamp(*value_range)
            final = float(
                gradient_matching_loss(
                    simulated_update(model, params, images, hard_label_loss(found), obs),
                    observed,
                    "l2",
                ).detach()
            )
            if not math.isfinite(final):
                final = math.inf
            if best is None or final < best[0]:
                best = (final, images, found, history)
        assert best is not None
        loss, images, chosen, history = best
        return GradientInversionResult(
            images=images, labels=chosen.clone(), history=history, matching_loss=loss
        )

    def _fit(
        self,
        model: nn.Module,
        params: dict[str, torch.Tensor],
        obs: GradientObservation,
        observed: list[torch.Tensor],
        x0: torch.Tensor,
        labels: torch.Tensor | None,
        label_logits0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """One L-BFGS start: (images, hard labels, matching loss at the start of each step)."""
        x = x0.clone().requires_grad_(True)
        variables = [x]
        if label_logits0 is not None:
            label_logits = label_logits0.clone().requires_grad_(True)
            variables.append(label_logits)
            loss_fn = soft_label_loss(label_logits)
        else:
            assert labels is not None
            loss_fn = hard_label_loss(labels)
        opt = torch.optim.LBFGS(
            variables,
            lr=self.lr,
            max_iter=self.max_iter,
            history_size=self.history_size,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = gradient_matching_loss(
                simulated_update(model, params, x, loss_fn, obs), observed, "l2"
            )
            loss.backward()
            return loss

        history: list[float] = []
        last_good = [t.detach().clone() for t in variables]
        for _ in range(self.steps):
            value = float(opt.step(closure).detach())
            if not math.isfinite(value) or not all(
                bool(torch.isfinite(t).all()) for t in variables
            ):
                break  # diverged: keep the last finite iterate
            history.append(value)
            last_good = [t.detach().clone() for t in variables]
            if value < self.tolerance:
                break
        found = labels if labels is not None else last_good[1].argmax(1)
        return last_good[0], found, history
