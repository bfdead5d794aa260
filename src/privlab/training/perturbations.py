"""Projected gradient methods shared by adversarial training, attacks and robustness metrics.

One PGD (Madry et al. 2018; Song et al. Eq. 9 untargeted, Eq. 19 targeted) over L∞ or L2
balls, clipped to the data's value range. ``forward`` is any differentiable map from inputs
to logits: a model, or a :class:`~privlab.threat_model.Target`'s white-box query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]
Objective = Callable[[torch.Tensor], torch.Tensor]  # x → per-example value to maximise
Norm = Literal["linf", "l2"]


def _flat_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    if norm == "l2":
        return delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    raise ValueError(f"unknown norm {norm!r}; use 'linf' or 'l2'")


def random_start(x: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Uniform noise in the L∞ ball, or a uniform-radius random direction in the L2 ball."""
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    direction = torch.randn_like(x)
    radius = torch.rand(len(x), *([1] * (x.dim() - 1)), device=x.device) * eps
    return direction / _flat_norm(direction) * radius


def maximise(
    objective: Objective,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None = None,
    norm: Norm = "linf",
    rand_init: bool = True,
    clip: tuple[float, float] = (0.0, 1.0),
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projected steepest ascent of ``objective`` inside ``B_eps(x) ∩ [clip]``.

    Steps are signed gradients for L∞ and normalised gradients for L2. Only the input
    gradient is computed: parameters receive none, so this costs one forward and one
    input-backward pass per step.
    """
    if eps < 0 or steps < 0:
        raise ValueError(f"eps and steps must be non-negative, got eps={eps}, steps={steps}")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    lo, hi = clip
    if init is not None:
        delta = init.detach() - x
    elif rand_init:
        delta = random_start(x, eps, norm)
    else:
        delta = torch.zeros_like(x)
    x_adv = (x + delta).clamp(lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(x_adv).sum(), x_adv)
        with torch.no_grad():
            step = grad.sign() if norm == "linf" else grad / _flat_norm(grad)
            delta = project(x_adv + alpha * step - x, eps, norm)
            x_adv = (x + delta).clamp(lo, hi)
    return x_adv.detach()


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: Norm = "linf",
    targeted: bool = False,
    rand_init: bool = True,
    clip: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Cross-entropy PGD. Untargeted: raise the loss of the true label ``y`` (Eq. 9).
    Targeted: ``y`` holds target labels and the loss towards them is lowered (Eq. 19)."""
    sign = -1.0 if targeted else 1.0

    def objective(z: torch.Tensor) -> torch.Tensor:
        return sign * F.cross_entropy(forward(z), y, reduction="none")

    return maximise(
        objective,
        x,
        eps=eps,
        steps=steps,
        step_size=step_size,
        norm=norm,
        rand_init=rand_init,
        clip=clip,
    )


def targeted_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """All k−1 wrong labels per example, shape N×(k−1), in increasing order (Song §5.2.5)."""
    classes = torch.arange(num_classes, device=y.device).expand(len(y), num_classes)
    keep = classes != y[:, None]
    return classes[keep].view(len(y), num_classes - 1)
