"""Drop layer: a learned, sparsified pixel mask in front of the classifier (after the group-lasso
input-selection layers of feature-selection networks, as used for the claim that a model which
never sees 97% of the pixels can still be inverted).

A mask W ∈ R^{C×H×W} (initialised to 0.5) multiplies the input, x ↦ W ⊙ x, and training
minimises

    L = CE_sum(f(W ⊙ x), y) + λ·Σ_p ‖W_{:,p}‖₂ + λ_ridge·Σ_p ‖W_{:,p}‖₂²,

a group lasso over the channels of each pixel p (λ = 0.025, λ_ridge = 0). After every optimiser
step pixels with ‖W_{:,p}‖₂ ≤ thr are dropped for good: thr = 1e-6 until epoch
min(``threshold_epoch``, epochs // 2), then 0.0025. A dropped pixel's weights are zero and an
``alive`` buffer that only ever switches off masks it in ``forward``, so its input value cannot
affect the output at all: the information-theoretic guarantee the experiment relies on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regime import Regime


class PixelMask(nn.Module):
    """x ↦ (W · alive) ⊙ x; for C×H×W inputs a pixel groups its C channels."""

    alive: torch.Tensor

    def __init__(self, input_shape: tuple[int, ...], init: float = 0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(tuple(input_shape), float(init)))
        pixels = tuple(input_shape[1:]) if len(input_shape) == 3 else tuple(input_shape)
        self.register_buffer("alive", torch.ones(pixels, dtype=torch.bool))

    def norms(self) -> torch.Tensor:
        """‖W_{:,p}‖₂ per pixel (|W_p| for inputs without a channel axis)."""
        w = self.weight
        return torch.linalg.vector_norm(w, dim=0) if w.dim() == 3 else w.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.weight * self.alive)

    @torch.no_grad()
    def drop(self, threshold: float) -> None:
        """Switch off (for good) pixels with norm ≤ ``threshold`` and zero their weights."""
        self.alive &= self.norms() > threshold
        self.weight.mul_(self.alive)


def _find_mask(model: nn.Module) -> PixelMask | None:
    return next((m for m in model.modules() if isinstance(m, PixelMask)), None)


def pixel_mask(model: nn.Module) -> torch.Tensor | None:
    """Boolean map of the pixels the model can see (H×W, or the input shape if it has no
    channel axis), or None if the model has no :class:`PixelMask`."""
    mask = _find_mask(model)
    return None if mask is None else mask.alive.detach().clone()


@REGIMES.register("drop_layer")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DropLayer(Regime):
    """Drop layer: group-lasso pixel mask with hard thresholding (pixels dropped for good)."""

    name = "drop_layer"
    lam: float = 0.025
    ridge: float = 0.0
    init: float = 0.5
    early_threshold: float = 1e-6
    threshold: float = 0.0025
    threshold_epoch: int = 10
    input_shape: tuple[int, ...] | None = None  # the runner sets it from the data bundle
    _state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.lam < 0 or self.ridge < 0 or self.threshold < 0 or self.early_threshold < 0:
            raise ValueError("lam, ridge and the thresholds must be non-negative")
        if self.input_shape is not None:  # configs give lists
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    def adapt_model(self, model: nn.Module) -> nn.Module:
        if _find_mask(model) is not None:
            return model
        if self.input_shape is None:
            raise ValueError("drop_layer needs input_shape (the data's C×H×W) to build its mask")
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"drop_layer prepends its mask to an nn.Sequential, got {type(model)}")
        device = next(model.parameters()).device
        mask = PixelMask(self.input_shape, self.init).to(device)
        return nn.Sequential(mask, *model)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        late = epoch >= min(self.threshold_epoch, epochs // 2)
        self._state["threshold"] = self.threshold if late else self.early_threshold

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mask = _find_mask(model)
        if mask is None:
            raise ValueError("drop_layer needs a model adapted with adapt_model (no mask found)")
        norms = mask.norms()
        penalty = self.lam * norms.sum() + self.ridge * norms.pow(2).sum()
        return F.cross_entropy(model(x), y, reduction="sum") + penalty

    def after_step(self, model: nn.Module) -> None:
        mask = _find_mask(model)
        if mask is not None:
            mask.drop(self._state.get("threshold", self.early_threshold))

    def finalize(self, model: nn.Module) -> nn.Module:
        mask = _find_mask(model)
        if mask is not None:
            kept = int(mask.alive.sum())
            self._state.update(pixels_kept=kept, pixels_kept_fraction=kept / mask.alive.numel())
        return model

    def summary(self) -> dict[str, Any]:
        keys = ("pixels_kept", "pixels_kept_fraction")
        return {k: self._state[k] for k in keys if k in self._state}
