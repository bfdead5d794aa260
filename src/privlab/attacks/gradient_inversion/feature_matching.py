"""Gradient inversion with feature matching (Liu et al. 2025, §"feature reconstruction", Fig. 4).

For a model whose logits come from a last ``nn.Linear`` layer z = W_L·h + b_L, the mean
cross-entropy's last-layer gradients are

    ∂L/∂W_L = (1/B)·Σ_i (p_i − e_{y_i}) h_iᵀ,        ∂L/∂b_L = (1/B)·Σ_i (p_i − e_{y_i}),

so for one example every row j with ∂L/∂b_j ≠ 0 gives the feature vector exactly:
h = ∂L/∂W_L[j] / ∂L/∂b_L[j] (the class with the largest |∂L/∂b_j| is used, for stability).
For a batch with distinct labels we use, as a documented approximation, the row of each
recovered label: ĥ_i = ∂L/∂W_L[y_i] / ∂L/∂b_L[y_i]. Row y_i equals
(1/B)·[(p_{i,y_i} − 1) h_i + Σ_{k≠i} p_{k,y_i} h_k], dominated by h_i when the other examples
put little probability on y_i (e.g. near initialisation, p ≈ 1/C): the estimate is exact for
B = 1 and biased towards the other examples' features otherwise.

The inputs are then found Inverting-Gradients style (signed Adam, step-wise lr decay,
projection onto the value range, restarts) with the objective

    w_grad·(1 − cos(∇_θ L(x̂, ŷ), G)) + λ_TV·TV(x̂) + λ_feat·mean_i ‖φ(x̂_i) − ĥ_i‖² / ‖ĥ_i‖²,

φ being the input of the last Linear (read with a forward hook). The feature term only uses
the last layer, so defences that spare it (pruning of small entries usually keeps the large
last-layer gradients) leave it intact — the paper's "with feature matching" attack.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call

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


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last module (in ``named_modules`` order) that has parameters; it must be an
    ``nn.Linear`` with a bias (the feature recovery divides by the bias gradient)."""
    last: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = (name, module)
    if last is None or not isinstance(last[1], nn.Linear):
        kind = "no parameters" if last is None else type(last[1]).__name__
        raise ValueError(
            f"feature matching needs a model whose last layer is an nn.Linear; got {kind}"
        )
    name, layer = last[0], last[1]
    if layer.bias is None:
        raise ValueError("feature matching needs the last nn.Linear to have a bias")
    return name, layer


def _pname(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


def recover_features(
    model: nn.Module, obs: GradientObservation, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Feature vectors (B × d) of the client's examples from the last layer's gradients.

    B = 1: ∂W_L[j]/∂b_L[j] for the class j with the largest |∂b_L[j]| (exact). B > 1: one row
    per label, ĥ_i = ∂W_L[y_i]/∂b_L[y_i] (exact only for B = 1; see the module docstring).
    Rows whose bias gradient is zero give a zero feature vector.
    """
    name, _ = final_linear(model)
    gw = obs.gradients[_pname(name, "weight")].detach().double()
    gb = obs.gradients[_pname(name, "bias")].detach().double().reshape(-1)
    if obs.batch_size == 1 or labels is None:
        rows = [int(torch.argmax(gb.abs()))] if obs.batch_size == 1 else []
        if not rows:
            raise ValueError("recovering features of a batch needs its labels")
    else:
        rows = [int(c) for c in labels]
    feats = []
    for j in rows:
        b = gb[j]
        feats.append(gw[j] / b if b != 0 else torch.zeros_like(gw[j]))
    return torch.stack(feats).float()


@ATTACKS.register("feature_matching")
@dataclasses.dataclass(kw_only=True)
class FeatureMatching(GradientInversionAttack):
    """Inverting Gradients + a last-layer feature-matching term (Liu et al. 2025, Fig. 4)."""

    name: ClassVar[str] = "feature_matching"
    iterations: int = 500
    restarts: int = 2
    lr: float = 0.1
    tv: float = 1e-2  # λ_TV
    feature_weight: float = 1.0  # λ_feat
    gradient_weight: float = 1.0  # w_grad; 0 = feature matching alone
    loss: MatchingLoss = "cosine"
    signed: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 1:
            raise ValueError("iterations and restarts must be ≥ 1")
        if not self.lr > 0 or self.tv < 0:
            raise ValueError(f"need lr > 0 and tv ≥ 0, got lr={self.lr}, tv={self.tv}")
        if self.feature_weight < 0 or self.gradient_weight < 0:
            raise ValueError("feature_weight and gradient_weight must be ≥ 0")
        if self.feature_weight == 0 and self.gradient_weight == 0:
            raise ValueError("at least one of feature_weight and gradient_weight must be > 0")

    def milestones(self) -> list[int]:
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
        _, layer = final_linear(model)
        labels = self.labels_for(model, obs, recover=True)
        assert labels is not None
        target = recover_features(model, obs, labels)
        scale = target.pow(2).sum(1).clamp_min(1e-12)
        loss_fn = hard_label_loss(labels)
        observed = observed_tensors(model, obs)
        params = model_parameters(model)
        captured: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            captured["h"] = inputs[0]

        def features(x: torch.Tensor) -> torch.Tensor:
            functional_call(model, params, (x,))
            return captured["h"].reshape(len(x), -1)

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            total = torch.zeros(())
            match = torch.zeros(())
            if self.gradient_weight:
                match = gradient_matching_loss(
                    simulated_update(model, params, x, loss_fn, obs), observed, self.loss
                )
                total = total + self.gradient_weight * match
            if self.feature_weight:
                feat = ((features(x) - target).pow(2).sum(1) / scale).mean()
                total = total + self.feature_weight * feat
            if self.tv:
                total = total + self.tv * total_variation(x)
            return total, match

        gen = torch.Generator().manual_seed(seed)
        lo, hi = value_range
        handle = layer.register_forward_pre_hook(hook)
        try:
            best: tuple[float, torch.Tensor, list[float]] | None = None
            for _ in range(self.restarts):
                x = random_images(obs.batch_size, input_shape, value_range, gen)
                x.requires_grad_(True)
                opt = torch.optim.Adam([x], lr=self.lr)
                sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones(), gamma=0.1)
                history: list[float] = []
                for _ in range(self.iterations):
                    opt.zero_grad()
                    total, _match = objective(x)
                    (grad,) = torch.autograd.grad(total, [x])
                    x.grad = grad.sign() if self.signed else grad
                    opt.step()
                    sched.step()
                    with torch.no_grad():
                        x.clamp_(lo, hi)
                    history.append(float(total.detach()))
                final_x = x.detach().clone().requires_grad_(True)
                final = float(objective(final_x)[0].detach())
                if not math.isfinite(final):
                    final = math.inf
                if best is None or final < best[0]:
                    best = (final, final_x.detach(), history)
        finally:
            handle.remove()
        assert best is not None
        loss, images, history = best
        return GradientInversionResult(
            images=images, labels=labels, history=history, matching_loss=loss
        )
