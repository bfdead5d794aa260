"""Utility and robustness of a model: clean and adversarial accuracy (Song et al. §3.4)."""

from __future__ import annotations

import torch
from torch import nn

from privlab.training.perturbations import Norm, pgd


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> float:
    """Fraction of examples whose arg-max prediction equals the label."""
    if len(y) == 0:
        return float("nan")
    model = model.to(device).eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        pred = model(x[i : i + batch_size].to(device)).argmax(dim=1)
        correct += int((pred == y[i : i + batch_size].to(device)).sum())
    return correct / len(y)


def adversarial_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    norm: Norm = "linf",
    clip: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> float:
    """Accuracy under untargeted PGD (random start) inside the ε-ball: adv-train/adv-test acc."""
    if len(y) == 0:
        return float("nan")
    model = model.to(device).eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        x_adv = pgd(model, xb, yb, eps=eps, steps=steps, step_size=step_size, norm=norm, clip=clip)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(dim=1) == yb).sum())
    return correct / len(y)


@torch.no_grad()
def per_example_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    model = model.to(device).eval()
    out = [
        torch.nn.functional.cross_entropy(
            model(x[i : i + batch_size].to(device)),
            y[i : i + batch_size].to(device),
            reduction="none",
        )
        for i in range(0, len(y), batch_size)
    ]
    return torch.cat(out).cpu() if out else torch.zeros(0)
