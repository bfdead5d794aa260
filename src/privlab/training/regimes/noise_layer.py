"""PixelDP's noise layer (Lecuyer et al., "Certified Robustness to Adversarial Examples with
Differential Privacy", S&P 2019), the robust training Song et al. attack in Appendix E.

A noise layer makes the map from the input to the scores (ε, δ)-DP with respect to changes of
the input of norm ≤ L (the certified radius), so that the *expected* scores move by a bounded
amount inside that ball. The pre-noise computation g has sensitivity Δ = max ‖g(x) − g(x′)‖ /
‖x − x′‖ and the noise is calibrated as PixelDP does:

* ``norm: l2``, Gaussian mechanism: σ = sqrt(2 ln(1.25/δ)) · Δ · L / ε (needs ε ≤ 1);
* ``norm: l1``, Laplace mechanism: b = Δ · L / ε.

``position: first_layer`` (PixelDP's default, "conv1") puts the noise right after the
network's first Linear / Conv2d layer, whose sensitivity is bounded by 1 in the forward pass
(PixelDP's "bound" scheme): its weight is divided by max(1, Δ(W)) with Δ(W) an upper bound of
its operator norm (:func:`layer_sensitivity`), so σ above holds with Δ = 1. ``position:
input`` adds the noise to the input itself (Δ = 1).

The model is trained with the noise on (one draw per example, mean cross-entropy). At
prediction (eval mode) it outputs log E_z[softmax(f(g(x) + z))], the Monte-Carlo mean of the
softmax over ``draws`` noise samples, so softmax of the output is the defended prediction
every attack sees. The draws are the same for every call and every example: they come from a
generator seeded with ``noise_seed`` at each forward call, so a query's scores do not depend on
the batch it is in and repeat exactly (common random numbers; PixelDP draws fresh noise per
query, whose mean the fixed draws estimate).

``budget()`` declares (L, "l2") for the Gaussian mechanism; the L1 certificate of the Laplace
mechanism is not a norm privlab's attacks perturb in, so it is reported in ``summary()`` only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.regime import Regime

Norm = Literal["l2", "l1"]
#: layers allowed before the first Linear / Conv2d: they only reshape (sensitivity 1)
_SHAPE_ONLY = (nn.Flatten, nn.Unflatten, nn.Identity)
#: elements of one Monte-Carlo chunk (draws × batch × features), to bound memory
_CHUNK_ELEMENTS = 1 << 24


def noise_scale(
    radius: float, eps: float, delta: float, norm: Norm, sensitivity: float = 1.0
) -> float:
    """σ of the Gaussian mechanism (``l2``) or b of the Laplace mechanism (``l1``) that makes a
    computation of sensitivity Δ (ε, δ)-DP for input changes of norm ≤ ``radius``."""
    if norm == "l2":
        return math.sqrt(2 * math.log(1.25 / delta)) * sensitivity * radius / eps
    if norm == "l1":
        return sensitivity * radius / eps
    raise ValueError(f"unknown norm {norm!r}; use l2 (Gaussian) or l1 (Laplace)")


def layer_sensitivity(layer: nn.Module, norm: Norm) -> torch.Tensor:
    """An upper bound of the p → p operator norm (p = 1 or 2) of a Linear / Conv2d layer's
    linear part: its sensitivity, differentiable in the weight.

    Linear: the spectral norm (l2) or the largest column L1 norm (l1). Conv2d (groups = 1):
    every input element enters at most n = ⌈k_h/s_h⌉·⌈k_w/s_w⌉ patches (k_h·k_w with dilation),
    so ‖Kx‖₂ ≤ sqrt(n)·‖W‖₂ ‖x‖₂ with W the (out, in·k_h·k_w) kernel matrix; in L1 each input
    element meets every weight of its input channel at most once."""
    if isinstance(layer, nn.Linear):
        w = layer.weight
        return torch.linalg.matrix_norm(w, ord=2) if norm == "l2" else w.abs().sum(0).max()
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        raise TypeError(f"no sensitivity bound for {layer}; use a Linear or Conv2d (groups=1)")
    w = layer.weight
    if norm == "l1":
        return w.abs().sum((0, 2, 3)).max()
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    dilated = layer.dilation != (1, 1)
    overlap = kh * kw if dilated else math.ceil(kh / sh) * math.ceil(kw / sw)
    return math.sqrt(overlap) * torch.linalg.matrix_norm(w.flatten(1), ord=2)


class SensitivityBounded(nn.Module):
    """A Linear / Conv2d layer whose weight is divided by max(1, Δ(W)) in every forward pass,
    so its sensitivity in ``norm`` is at most 1 (PixelDP's "bound" scheme)."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, norm: Norm) -> None:
        super().__init__()
        self.layer = layer
        self.norm: Norm = norm

    def bounded_weight(self) -> torch.Tensor:
        return self.layer.weight / layer_sensitivity(self.layer, self.norm).clamp_min(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer, weight = self.layer, self.bounded_weight()
        if isinstance(layer, nn.Linear):
            return F.linear(x, weight, layer.bias)
        return layer._conv_forward(x, weight, layer.bias)


def _sample(
    shape: tuple[int, ...],
    norm: Norm,
    generator: torch.Generator | None = None,
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard Gaussian (l2) or Laplace(0, 1) (l1: a difference of two Exp(1)) noise, on the
    device and in the dtype of ``like`` (else float32 on the CPU)."""
    kw: dict[str, Any] = {} if like is None else {"device": like.device, "dtype": like.dtype}
    if norm == "l2":
        return torch.randn(shape, generator=generator, **kw)
    a = torch.empty(shape, **kw).exponential_(generator=generator)
    return a - torch.empty(shape, **kw).exponential_(generator=generator)


class NoiseLayer(nn.Module):
    """h ↦ f(h + scale·z): noise on the pre-noise representation h, then the rest f of the
    network. Training mode: one fresh draw per example, logits out. Eval mode: the log of the
    mean softmax over ``draws`` fixed draws (seeded with ``seed`` at every call)."""

    def __init__(
        self,
        rest: nn.Module,
        *,
        scale: float = 0.0,
        norm: Norm = "l2",
        draws: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.rest = rest
        self.configure(scale=scale, norm=norm, draws=draws, seed=seed)

    def configure(self, *, scale: float, norm: Norm, draws: int, seed: int) -> None:
        """Set the noise (plain attributes, not weights: the regime sets them on every build)."""
        self.scale, self.norm, self.draws, self.seed = float(scale), norm, int(draws), int(seed)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training:
            noise = _sample(tuple(h.shape), self.norm, like=h)
            return self.rest(h + self.scale * noise)
        return self.expected_log_softmax(h)

    def expected_log_softmax(self, h: torch.Tensor) -> torch.Tensor:
        """log (1/K) Σ_k softmax(f(h + scale·z_k)) over the K = ``draws`` fixed draws."""
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: alike on every device
        z = _sample((self.draws, *h.shape[1:]), self.norm, generator).to(h)
        per_row = max(1, h[0].numel() * len(h))
        chunk = max(1, _CHUNK_ELEMENTS // per_row)
        parts = []
        for zc in z.split(chunk):  # (k, *features) draws → (k·B) noisy rows
            noisy = (h.unsqueeze(0) + self.scale * zc.unsqueeze(1)).flatten(0, 1)
            logp = F.log_softmax(self.rest(noisy), dim=-1).unflatten(0, (len(zc), len(h)))
            parts.append(torch.logsumexp(logp, dim=0))
        return torch.logsumexp(torch.stack(parts), dim=0) - math.log(self.draws)


def _leaves(model: nn.Module) -> list[nn.Module]:
    """The modules of a (nested) nn.Sequential in the order they run."""
    if not isinstance(model, nn.Sequential):
        return [model]
    return [leaf for child in model for leaf in _leaves(child)]


def _split_at_first_layer(
    model: nn.Module,
) -> tuple[list[nn.Module], nn.Linear | nn.Conv2d, list[nn.Module]]:
    """(shape-only prefix, first Linear / Conv2d, the rest) of a chain of layers."""
    leaves = _leaves(model)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, nn.Linear | nn.Conv2d):
            return leaves[:i], leaf, leaves[i + 1 :]
        if not isinstance(leaf, _SHAPE_ONLY):
            break
    raise TypeError(
        "noise_layer with position: first_layer needs an nn.Sequential whose first layer with "
        f"weights is a Linear or Conv2d (only reshaping before it); got {type(model).__name__}. "
        "Use position: input for other models"
    )


def noise_layer_of(model: nn.Module) -> NoiseLayer | None:
    return next((m for m in model.modules() if isinstance(m, NoiseLayer)), None)


@REGIMES.register("noise_layer")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NoiseLayerTraining(Regime):
    """PixelDP noise layer (Lecuyer et al.; Song et al. App. E): Gaussian / Laplace noise after
    the first layer, calibrated to a certified radius; predictions average the softmax over
    Monte-Carlo draws."""

    name = "noise_layer"
    radius: float = 0.1  # L: the certified radius (PixelDP's attack norm bound)
    dp_eps: float = 1.0  # ε of the noise layer's (ε, δ)-DP, w.r.t. the *input* (not the data)
    dp_delta: float = 0.05
    norm: Norm = "l2"  # l2: Gaussian mechanism, l1: Laplace mechanism
    position: Literal["first_layer", "input"] = "first_layer"
    draws: int = 32  # Monte-Carlo draws per prediction
    noise_seed: int = 0  # the prediction draws' seed

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.dp_eps <= 0 or self.draws < 1:
            raise ValueError("radius and dp_eps must be positive and draws at least 1")
        if self.norm not in ("l2", "l1") or self.position not in ("first_layer", "input"):
            raise ValueError("norm must be l2 or l1, position first_layer or input")
        if self.norm == "l2" and not (self.dp_eps <= 1 and 0 < self.dp_delta < 1):
            raise ValueError("the Gaussian mechanism's calibration needs dp_eps ≤ 1, 0 < δ < 1")

    @property
    def sigma(self) -> float:
        """The noise scale (σ, or the Laplace b) for a pre-noise sensitivity of 1."""
        return noise_scale(self.radius, self.dp_eps, self.dp_delta, self.norm)

    def budget(self) -> tuple[float | None, str]:
        return (self.radius, "l2") if self.norm == "l2" else (None, "linf")

    def adapt_model(self, model: nn.Module) -> nn.Module:
        if noise_layer_of(model) is None:  # else already adapted (a model rebuilt for its weights)
            if self.position == "input":
                model = nn.Sequential(NoiseLayer(model))
            else:
                prefix, first, rest = _split_at_first_layer(model)
                bounded = SensitivityBounded(first, self.norm)
                model = nn.Sequential(*prefix, bounded, NoiseLayer(nn.Sequential(*rest)))
        for module in model.modules():  # the noise settings are the regime's, not weights
            if isinstance(module, NoiseLayer):
                module.configure(
                    scale=self.sigma, norm=self.norm, draws=self.draws, seed=self.noise_seed
                )
            elif isinstance(module, SensitivityBounded):
                module.norm = self.norm
        return model

    def summary(self) -> dict[str, Any]:
        mechanism = "gaussian" if self.norm == "l2" else "laplace"
        return {
            "noise_layer": {
                "mechanism": mechanism,
                "scale": self.sigma,
                "certified_radius": self.radius,
                "norm": self.norm,
                "dp_eps": self.dp_eps,
                "dp_delta": self.dp_delta if self.norm == "l2" else 0.0,
                "position": self.position,
                "draws": self.draws,
            }
        }
