"""Trap-MID, trapdoor-based defence against model inversion (Liu et al., "Trap-MID:
Trapdoor-based Defense against Model Inversion Attacks", NeurIPS 2024).

Every class t owns a trigger T_t ∈ [0, 1]^{C×H×W} (uniform initialisation). A trapdoor input
blends it in, x̃ = (1 − α)·x + α·T_t with α = 0.02, for a uniformly random trapdoor class t.
The model learns the trapdoors alongside the task,

    L = (1 − β)·CE(f(aug(x)), y) + β·CE(f(aug(x̃)), t),   β = 0.2,

so an inversion attack that maximises f's confidence in a class is lured into its trapdoor.
With ``optimized`` the triggers are made natural and effective at each batch: a discriminator D
(the model's architecture with one output) learns clean → 1, triggered → 0 by BCE (Adam,
lr 1e-3), and T ← clip(T − 0.01·sign(∇_T [BCE(D(x̃), 1) + CE(f(aug(x̃)), t)]), 0, 1).
``aug`` is a differentiable random affine map (resized crop of scale 0.8–1, rotation ±30°,
each with probability ½; horizontal flips only with ``flip``, off for digits).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.models.surgery import last_linear, set_module
from privlab.registry import REGIMES
from privlab.training.regime import Regime, attack_mode


def random_affine(x: torch.Tensor, *, flip: bool = False, p: float = 0.5) -> torch.Tensor:
    """Random crop-and-resize (area 0.8–1), rotation (±30°) and optional flip of N×C×H×W."""
    if x.dim() != 4:
        return x  # flat inputs: no spatial augmentation
    n, dev = len(x), x.device

    def on() -> torch.Tensor:  # 1 with probability p, per example
        return (torch.rand(n, device=dev) < p).to(x.dtype)

    scale = 1 - on() * (1 - torch.empty(n, device=dev).uniform_(0.8, 1.0).sqrt())
    shift = (1 - scale)[:, None] * torch.empty(n, 2, device=dev).uniform_(-1, 1)
    angle = on() * torch.empty(n, device=dev).uniform_(-math.pi / 6, math.pi / 6)
    mirror = 1 - 2 * on() if flip else torch.ones(n, device=dev, dtype=x.dtype)
    cos, sin = angle.cos() * scale, angle.sin() * scale
    row_x = torch.stack([cos * mirror, -sin, shift[:, 0]], 1)
    row_y = torch.stack([sin * mirror, cos, shift[:, 1]], 1)
    theta = torch.stack([row_x, row_y], 1)  # output → input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


@REGIMES.register("trap_mid")
@dataclasses.dataclass(frozen=True, kw_only=True)
class TrapMID(Regime):
    """Trap-MID: learn per-class blended triggers as trapdoors that lure inversion attacks."""

    name = "trap_mid"
    resumable = False  # the discriminator and triggers train beside the model
    alpha: float = 0.02
    beta: float = 0.2
    trigger_step: float = 0.01
    optimized: bool = True
    augment: bool = True
    flip: bool = False
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0 <= self.alpha <= 1 and 0 <= self.beta <= 1):
            raise ValueError(f"alpha and beta must be in [0, 1], got {self.alpha}, {self.beta}")

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        if not isinstance(loader.dataset, TensorDataset):
            raise TypeError("trap_mid needs the training loop's TensorDataset loader")
        x = loader.dataset.tensors[0]
        name, linear = last_linear(model)
        lo, hi = self.clip
        unit = torch.rand(linear.out_features, *x.shape[1:], device=x.device)  # first draw
        triggers = lo + (hi - lo) * unit
        disc = copy.deepcopy(model)
        set_module(disc, name, nn.Linear(linear.in_features, 1).to(linear.weight.device))
        self._state.clear()
        self._state.update(
            triggers=triggers,
            disc=disc.train(),
            disc_opt=torch.optim.Adam(disc.parameters(), lr=1e-3),
        )
        return model, optimizer, loader

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self._state.update(hits=0, seen=0)

    def blend(
        self, x: torch.Tensor, t: torch.Tensor, triggers: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x̃ = (1 − α)·x + α·T_t (the trained triggers unless ``triggers`` is given)."""
        triggers = self._state["triggers"] if triggers is None else triggers
        return (1 - self.alpha) * x + self.alpha * triggers[t]

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return random_affine(x, flip=self.flip) if self.augment else x

    def _update_triggers(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> None:
        disc, disc_opt = self._state["disc"], self._state["disc_opt"]
        ones = torch.ones(len(x), 1, device=x.device)
        fake = self.blend(x, t).detach()
        d_loss = F.binary_cross_entropy_with_logits(
            disc(torch.cat([x, fake])), torch.cat([ones, torch.zeros_like(ones)])
        )
        disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        disc_opt.step()
        triggers = self._state["triggers"].clone().requires_grad_(True)
        blended = self.blend(x, t, triggers)
        with attack_mode(model):
            t_loss = F.binary_cross_entropy_with_logits(disc(blended), ones) + F.cross_entropy(
                model(self._aug(blended)), t
            )
            (grad,) = torch.autograd.grad(t_loss, triggers)
        step = triggers.detach() - self.trigger_step * grad.sign()
        self._state["triggers"] = step.clamp(*self.clip)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = torch.randint(0, len(self._state["triggers"]), y.shape, device=y.device)
        if self.optimized:
            self._update_triggers(model, x, t)
        trap_logits = model(self._aug(self.blend(x, t)))
        self._state["hits"] = self._state.get("hits", 0) + int((trap_logits.argmax(1) == t).sum())
        self._state["seen"] = self._state.get("seen", 0) + len(t)
        clean = F.cross_entropy(model(self._aug(x)), y)
        return (1 - self.beta) * clean + self.beta * F.cross_entropy(trap_logits, t)

    def finalize(self, model: nn.Module) -> nn.Module:
        self._state.pop("disc", None)  # keep only the triggers: the discriminator is scaffolding
        self._state.pop("disc_opt", None)
        return model

    def summary(self) -> dict[str, Any]:
        seen = self._state.get("seen", 0)
        return {"trapdoor_success_last_epoch": self._state.get("hits", 0) / seen} if seen else {}
