"""A federated client's update: one gradient step, or several local SGD steps (FedAvg).

One step: G = ∇_θ (1/B)·Σ_k CE(f_θ(x_k), y_k) at the global weights θ₀.

Several steps (McMahan et al. 2017): on a copy of the model, θ_{t+1} = θ_t − η·∇_θ L_t(θ_t),
where L_t is the mean cross-entropy on the t-th mini-batch of ``local_batch`` examples (the
mini-batches are taken in order and cycle over the client's data; the whole batch when None).
The client sends θ_end; the server's observation is (θ₀ − θ_end)/η = Σ_t ∇L_t(θ_t), which is
what a gradient-inversion attack matches. The passed model is never modified (not its
parameters, not its ``.grad`` fields, not its train/eval mode).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from privlab.federated.observation import GradientObservation


def _mean_ce_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    params = [p for _, p in model.named_parameters()]
    loss = F.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, params))


def _reads_only(model: nn.Module) -> bool:
    """Whether a forward and backward pass leave ``model`` as it was: every parameter already
    requires grad, and there are no buffers (batch norm's running statistics change in a
    training-mode forward)."""
    return all(p.requires_grad for p in model.parameters()) and next(model.buffers(), None) is None


def _gradient_observation(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float
) -> GradientObservation:
    names = [n for n, _ in model.named_parameters()]
    grads = _mean_ce_grads(model, x, y)
    return observation_of(
        {n: g.detach() for n, g in zip(names, grads, strict=True)}, len(x), 1, lr, None
    )


def check_client_args(
    x: torch.Tensor, y: torch.Tensor, local_steps: int, lr: float, local_batch: int | None
) -> None:
    """The arguments of :func:`client_update` (also checked by defences that run their own
    local loop)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as inputs (≥ 1), got {len(x)} and {len(y)}")
    if local_steps < 1:
        raise ValueError(f"local_steps must be ≥ 1, got {local_steps}")
    if local_batch is not None and not 1 <= local_batch <= len(x):
        raise ValueError(f"local_batch must be in 1..{len(x)}, got {local_batch}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")


def observation_of(
    gradients: dict[str, torch.Tensor],
    batch: int,
    local_steps: int,
    lr: float,
    local_batch: int | None,
) -> GradientObservation:
    """An observation with :func:`client_update`'s metadata: the plain gradient (``lr`` None)
    for one full-batch step, the FedAvg pseudo-gradient otherwise."""
    if local_steps == 1 and (local_batch is None or local_batch == batch):
        return GradientObservation(gradients=gradients, batch_size=batch)
    return GradientObservation(
        gradients=gradients,
        batch_size=batch,
        local_steps=local_steps,
        lr=lr,
        local_batch=local_batch,
    )


def client_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    local_steps: int = 1,
    lr: float = 0.1,
    local_batch: int | None = None,
) -> GradientObservation:
    """The observation an honest-but-curious server receives from a client holding (x, y).

    Runs in the model's current mode (call ``model.train()`` first for dropout/batch-norm
    training behaviour). With ``local_steps`` = 1 and no ``local_batch`` the observation is the
    exact gradient (its ``lr`` is None); otherwise it is the FedAvg pseudo-gradient.
    """
    check_client_args(x, y, local_steps, lr, local_batch)
    batch = len(x) if local_batch is None else local_batch
    one_step = local_steps == 1 and batch == len(x)
    if one_step and _reads_only(model):
        # one gradient needs no copy of the model (a copy per client per round was a third of
        # a small model's FedAvg round): autograd.grad leaves .grad and the weights alone
        return _gradient_observation(model, x, y, lr)
    local = copy.deepcopy(model)
    for p in local.parameters():
        p.requires_grad_(True)
    if one_step:
        return _gradient_observation(local, x, y, lr)
    start = {n: p.detach().clone() for n, p in local.named_parameters()}
    cursor = 0
    for _ in range(local_steps):
        idx = torch.arange(cursor, cursor + batch) % len(x)
        cursor = (cursor + batch) % len(x)
        grads = _mean_ce_grads(local, x[idx], y[idx])
        with torch.no_grad():
            for p, g in zip(local.parameters(), grads, strict=True):
                p.sub_(lr * g)
    pseudo = {n: (start[n] - p.detach()) / lr for n, p in local.named_parameters()}
    return observation_of(pseudo, len(x), local_steps, lr, local_batch)
