"""Utility and robustness of a model: clean and adversarial accuracy (Song et al. §3.4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from privlab.training.perturbations import Norm, pgd

Perturb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _fraction_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device | str,
    perturb: Perturb | None = None,
) -> float:
    """Fraction of (optionally perturbed) examples whose arg-max prediction is the label."""
    if len(y) == 0:
        return float("nan")
    model = model.to(device).eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        if perturb is not None:
            xb = perturb(xb, yb)
        with torch.no_grad():
            correct += int((model(xb).argmax(dim=1) == yb).sum())
    return correct / len(y)


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> float:
    """Fraction of examples whose arg-max prediction equals the label."""
    return _fraction_correct(model, x, y, batch_size, device)


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

    def attack(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pgd(model, xb, yb, eps=eps, steps=steps, step_size=step_size, norm=norm, clip=clip)

    return _fraction_correct(model, x, y, batch_size, device, attack)


@torch.no_grad()
def verified_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    clip: tuple[float, float] = (0.0, 1.0),
    verifier: str = "ibp",
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> float:
    """Fraction certified correct on B_ε(x) by ``verifier`` (ibp, crown_ibp, crown, zonotope):
    ver-train / ver-test accuracy."""
    from privlab.verify.verifiers import verified_worst_case_logits

    if len(y) == 0:
        return float("nan")
    model = model.to(device).eval()
    certified = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        worst = verified_worst_case_logits(model, xb, yb, eps, clip, verifier=verifier)
        certified += int((worst.argmax(dim=1) == yb).sum())
    return certified / len(y)


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
