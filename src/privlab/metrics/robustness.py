"""Robust accuracy under L∞ attacks: PGD and APGD-CE, the cross-entropy Auto-PGD of AutoAttack.

APGD-CE follows Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks" (ICML), Algorithm 1, written from the paper for
the L∞ ball intersected with the data's value range (``P`` below projects onto that set):

* start at ``x⁰`` (uniform in the ε-ball, or ``x`` itself) and take one plain step
  ``x¹ = P(x⁰ + η·sign ∇f(x⁰))`` with η = 2ε, where f is the per-example cross-entropy;
* afterwards step with momentum α = 0.75:
  ``z = P(xᵏ + η·sign ∇f(xᵏ))``, ``xᵏ⁺¹ = P(xᵏ + α(z − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹))``;
* keep, per example, the highest-loss iterate ``x_max`` and its loss ``f_max``;
* at the checkpoints ``w_j = ⌈p_j·N⌉`` with p₀ = 0, p₁ = 0.22 and
  ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`` (:func:`apgd_checkpoints`), halve that
  example's η and restart it from ``x_max`` if
  (1) the loss rose in fewer than a fraction ρ = 0.75 of the steps since the previous
  checkpoint, or (2) η was not halved at the previous checkpoint and ``f_max`` has not
  improved since then.

Step sizes are per example. The attack returns, per example, the highest-loss iterate that is
misclassified if any iterate was, else the highest-loss iterate; with several restarts, only
examples not yet misclassified are attacked again from a fresh random start (as AutoAttack).

Deviations from the reference implementation (github.com/fra31/auto-attack), all minor: the
random start is uniform in the ball (AutoAttack rescales uniform noise so that its largest
coordinate is exactly ε); condition 1 uses the paper's strict ``<``; condition 2 may already
fire at the first checkpoint (w₀ counts as a checkpoint without halving); after a restart
from ``x_max`` the momentum term is zero.

:func:`robust_accuracy` follows the AT-AT replication protocol (ICLR 2026): an example is
robust when both its clean and its adversarial prediction are right, i.e.
``robust_acc = 1 − mean[pred(x) ≠ y ∨ pred(x_adv) ≠ y]``, and ``loss_increase`` is the mean of
``CE(x_adv) − CE(x)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from privlab.training.perturbations import pgd

Forward = Callable[[torch.Tensor], torch.Tensor]
Attack = Literal["pgd", "apgd_ce"]

MOMENTUM = 0.75  # α of Algorithm 1
DEFAULT_STEPS: dict[str, int] = {"apgd_ce": 100, "pgd": 20}
_Run = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # points, ever misclassified, loss


class RobustAccuracy(TypedDict):
    attack: str
    eps: float
    steps: int
    clean_acc: float
    robust_acc: float
    loss_increase: float


def apgd_checkpoints(steps: int) -> list[int]:
    """Checkpoint iterations ``w_j = ⌈p_j·steps⌉`` (``p_j ≤ 1``) of APGD, starting with 0.

    ``p₀ = 0``, ``p₁ = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``, computed in
    exact rational arithmetic; repeated values (few steps) are dropped. For 100 steps:
    0, 22, 41, 57, 70, 80, 87, 93, 99.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    previous, p = Fraction(0), Fraction(22, 100)
    points = [0]
    while p <= 1:
        w = math.ceil(p * steps)
        if w > points[-1]:
            points.append(w)
        previous, p = p, p + max(p - previous - Fraction(3, 100), Fraction(6, 100))
    return points


@contextlib.contextmanager
def _eval_mode(model_or_forward: nn.Module | Forward) -> Iterator[None]:
    """Eval mode (no dropout, frozen BN statistics) for modules; the mode is restored after."""
    if not isinstance(model_or_forward, nn.Module):
        yield
        return
    was_training = model_or_forward.training
    model_or_forward.eval()
    try:
        yield
    finally:
        model_or_forward.train(was_training)


def _uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """``x`` plus uniform noise in [−ε, ε], drawn on the CPU (same numbers on every device)."""
    dtype = x.dtype if x.is_floating_point() else torch.float32
    noise = torch.rand(x.shape, generator=generator, dtype=dtype)
    return x + (2 * noise - 1).to(x.device) * eps


def _single_run(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    *,
    eps: float,
    steps: int,
    rho: float,
    clip: tuple[float, float],
) -> _Run:
    """One APGD-CE run from ``start``: (adversarial points, ever misclassified, their loss)."""
    lo, hi = clip
    low, high = x - eps, x + eps
    bcast = (len(x),) + (1,) * (x.dim() - 1)

    def project(z: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(z, low), high).clamp(lo, hi)

    def evaluate(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(z)
            loss = F.cross_entropy(logits, y, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), grad.detach(), logits.detach().argmax(dim=1) != y

    def pick(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)

    x_cur = project(start)
    loss_cur, grad, wrong = evaluate(x_cur)
    x_best, loss_best, grad_best = x_cur, loss_cur, grad
    fooled = wrong
    x_fool = x_cur
    loss_fool = torch.where(wrong, loss_cur, torch.full_like(loss_cur, -math.inf))

    eta = torch.full(bcast, 2.0 * eps, dtype=x_cur.dtype, device=x.device)
    x_prev = x_cur
    checkpoints = apgd_checkpoints(steps)[1:]
    next_check = 0
    last_w = 0
    increases = torch.zeros(len(x), dtype=torch.long, device=x.device)
    best_at_last = loss_best
    reduced_at_last = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    for k in range(steps):
        with torch.no_grad():
            z = project(x_cur + eta * grad.sign())
            if k > 0:
                z = project(x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - x_prev))
            x_prev, x_cur = x_cur, z
        loss_new, grad, wrong = evaluate(x_cur)
        increases += (loss_new > loss_cur).long()
        loss_cur = loss_new

        better = loss_cur > loss_best
        x_best, grad_best = pick(better, x_cur, x_best), pick(better, grad, grad_best)
        loss_best = torch.where(better, loss_cur, loss_best)
        fool_better = wrong & (loss_cur > loss_fool)
        x_fool = pick(fool_better, x_cur, x_fool)
        loss_fool = torch.where(fool_better, loss_cur, loss_fool)
        fooled = fooled | wrong

        if next_check < len(checkpoints) and k + 1 == checkpoints[next_check]:
            w = checkpoints[next_check]
            oscillating = increases < rho * (w - last_w)  # condition 1
            stalled = ~reduced_at_last & (loss_best <= best_at_last)  # condition 2
            reduce = oscillating | stalled
            eta = pick(reduce, eta / 2, eta)
            x_cur = pick(reduce, x_best, x_cur)
            x_prev = pick(reduce, x_best, x_prev)
            grad = pick(reduce, grad_best, grad)
            loss_cur = torch.where(reduce, loss_best, loss_cur)
            reduced_at_last, best_at_last = reduce, loss_best
            increases = torch.zeros_like(increases)
            last_w = w
            next_check += 1

    x_adv = pick(fooled, x_fool, x_best)
    return x_adv.detach(), fooled, torch.where(fooled, loss_fool, loss_best)


def _apgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    rho: float,
    restarts: int,
    clip: tuple[float, float],
    rand_init: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    x = x.detach()
    if eps == 0 or steps == 0 or len(x) == 0:
        return x.clone()
    y = y.to(x.device)

    def run(xs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor) -> _Run:
        return _single_run(forward, xs, ys, start, eps=eps, steps=steps, rho=rho, clip=clip)

    x_adv, fooled, loss = run(x, y, _uniform_start(x, eps, generator) if rand_init else x)
    for _ in range(1, restarts if rand_init else 1):
        todo = (~fooled).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        xs, ys = x[todo], y[todo]
        cand, cand_fooled, cand_loss = run(xs, ys, _uniform_start(xs, eps, generator))
        keep = cand_fooled | (cand_loss > loss[todo])
        x_adv[todo[keep]], loss[todo[keep]] = cand[keep], cand_loss[keep]
        fooled[todo] = cand_fooled
    return x_adv


def apgd_ce(
    model_or_forward: nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 100,
    rho: float = 0.75,
    restarts: int = 1,
    clip: tuple[float, float] = (0.0, 1.0),
    rand_init: bool = True,
    seed: int | None = None,
) -> torch.Tensor:
    """Untargeted L∞ APGD-CE (Croce & Hein 2020, Algorithm 1) inside ``B_ε(x) ∩ [clip]``.

    ``model_or_forward`` maps inputs to logits; a module is put in eval mode for the attack
    and its mode is restored after. Only input gradients are computed (parameters get no
    ``.grad``). ``seed`` seeds the random starts (drawn on the CPU, so the same on every
    device); ``None`` uses the global RNG. ``restarts`` re-attack, from fresh random starts,
    the examples no iterate has misclassified yet (a no-op without ``rand_init``).
    """
    if eps < 0 or steps < 0 or restarts < 1:
        raise ValueError(f"need eps ≥ 0, steps ≥ 0, restarts ≥ 1; got {eps}, {steps}, {restarts}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with _eval_mode(model_or_forward):
        return _apgd(
            model_or_forward,
            x,
            y,
            eps=eps,
            steps=steps,
            rho=rho,
            restarts=restarts,
            clip=clip,
            rand_init=rand_init,
            generator=generator,
        )


@contextlib.contextmanager
def _seeded_global_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs (PGD's random start draws from them), restoring them after."""
    if seed is None:
        yield
        return
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:  # torch.manual_seed below seeds every device; the attacked one is restored after
        index = device.index
        if index is None:
            index = torch.cuda.current_device() if device.type == "cuda" else 0
        fork = torch.random.fork_rng(devices=[index], device_type=device.type)
    with fork:
        torch.manual_seed(seed)
        yield


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    attack: Attack = "apgd_ce",
    steps: int | None = None,
    rho: float = 0.75,
    restarts: int = 1,
    clip: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int | None = 0,
) -> RobustAccuracy:
    """Clean and robust accuracy under an untargeted L∞ attack, and the mean loss increase.

    ``attack`` is ``"apgd_ce"`` (:func:`apgd_ce`, 100 steps by default; ``rho`` and
    ``restarts`` apply to it) or ``"pgd"`` (:func:`~privlab.training.perturbations.pgd`,
    random start, step size 2.5·ε/steps, 20 steps by default). Robust accuracy counts an
    example only if both its clean and adversarial predictions are right. The model runs in
    eval mode; its mode is restored after. ``seed`` makes the random starts reproducible.
    """
    if attack not in DEFAULT_STEPS:
        raise ValueError(f"unknown attack {attack!r}; use 'pgd' or 'apgd_ce'")
    n_steps = DEFAULT_STEPS[attack] if steps is None else steps
    if eps < 0 or n_steps < 0 or batch_size < 1:
        raise ValueError(
            f"need eps ≥ 0, steps ≥ 0, batch_size ≥ 1; got {eps}, {n_steps}, {batch_size}"
        )
    if len(y) == 0:
        nan = float("nan")
        return RobustAccuracy(
            attack=attack,
            eps=float(eps),
            steps=n_steps,
            clean_acc=nan,
            robust_acc=nan,
            loss_increase=nan,
        )
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    clean = robust = 0
    loss_increase = 0.0
    model = model.to(device)
    with _eval_mode(model), _seeded_global_rng(seed if attack == "pgd" else None, device):
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            if attack == "apgd_ce":
                adv = _apgd(
                    model,
                    xb,
                    yb,
                    eps=eps,
                    steps=n_steps,
                    rho=rho,
                    restarts=restarts,
                    clip=clip,
                    rand_init=True,
                    generator=generator,
                )
            else:
                step_size = 2.5 * eps / n_steps if n_steps > 0 else None
                adv = pgd(model, xb, yb, eps=eps, steps=n_steps, step_size=step_size, clip=clip)
            with torch.no_grad():
                clean_logits, adv_logits = model(xb), model(adv)
            clean_ok = clean_logits.argmax(dim=1) == yb
            robust_ok = clean_ok & (adv_logits.argmax(dim=1) == yb)
            clean += int(clean_ok.sum())
            robust += int(robust_ok.sum())
            gap = F.cross_entropy(adv_logits, yb, reduction="none") - F.cross_entropy(
                clean_logits, yb, reduction="none"
            )
            loss_increase += float(gap.double().sum())
    n = len(y)
    return RobustAccuracy(
        attack=attack,
        eps=float(eps),
        steps=n_steps,
        clean_acc=clean / n,
        robust_acc=robust / n,
        loss_increase=loss_increase / n,
    )
