"""Prediction vectors an attacker can extract from a target: benign, and under untargeted or
targeted PGD inside the target's ε-ball (Song et al. §3.3, Eqs. 17–19)."""

from __future__ import annotations

import torch

from privlab.threat_model import Target
from privlab.training.perturbations import pgd, targeted_labels


def attack_budget(target: Target, eps: float | None) -> float:
    """The ε to attack with: the attacker's own guess, else the target's declared budget."""
    budget = eps if eps is not None else target.info.eps
    if budget is None:
        raise ValueError(
            f"target {target.info.name!r} declares no perturbation budget (it was not trained "
            "robustly); give the attack an explicit eps"
        )
    return float(budget)


def adversarial_inputs(
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None,
    targeted: bool = False,
) -> torch.Tensor:
    x, y = x.to(target.device), y.to(target.device)
    return pgd(
        target.differentiable_logits,
        x,
        y,
        eps=eps,
        steps=steps,
        step_size=step_size,
        norm=target.info.norm,
        targeted=targeted,
        clip=target.info.value_range,
    )


def benign_probs(target: Target, x: torch.Tensor) -> torch.Tensor:
    return target.predict_proba(x)


def untargeted_probs(
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None,
) -> torch.Tensor:
    return target.predict_proba(
        adversarial_inputs(target, x, y, eps=eps, steps=steps, step_size=step_size)
    )


def targeted_probs(
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None,
) -> torch.Tensor:
    """N×(k−1)·k: prediction vectors of the k−1 targeted adversarial examples, concatenated."""
    k = target.info.num_classes
    wrong = targeted_labels(y.to(target.device), k)  # N×(k−1)
    x_rep = x.to(target.device).repeat_interleave(k - 1, dim=0)
    x_adv = adversarial_inputs(
        target, x_rep, wrong.reshape(-1), eps=eps, steps=steps, step_size=step_size, targeted=True
    )
    return target.predict_proba(x_adv).reshape(len(x), (k - 1) * k)


def true_class_confidence(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return probs.gather(1, y.to(probs.device).view(-1, 1)).squeeze(1)
