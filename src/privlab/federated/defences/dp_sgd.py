"""DP-SGD at the client (Abadi et al. 2016; Liu et al. 2025, Prop. 2.1 and Prop. 3.3).

Every local step on a mini-batch of b examples computes each example's gradient g_k of the
cross-entropy, clips it to norm C over all parameters together,

    ḡ_k = g_k · min(1, C / ‖g_k‖₂),

adds Gaussian noise of standard deviation σ·C (σ = ``noise_multiplier``) to the sum and divides
by the (fixed) mini-batch size (clipping, noise and ε are :mod:`privlab.training.dp`'s):

    g̃ = (Σ_k ḡ_k + N(0, σ²C²·I)) / b.

With one full-batch step the server observes g̃ itself; with several local steps the client
moves by θ ← θ − η·g̃ after each one and the server observes (θ₀ − θ_end)/η = Σ_t g̃_t. Changing
one example changes Σ_k ḡ_k by at most C (add/remove) so each step is a Gaussian mechanism of
noise multiplier σ, and :meth:`DPSGD.epsilon` composes them with Opacus' RDP accountant.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from privlab.federated.client import check_client_args, observation_of
from privlab.federated.defences.base import (
    DEFENCES,
    Defence,
    Gradients,
    require_generator,
)
from privlab.federated.defences.linear_clipping import linear_clipped_sum
from privlab.federated.observation import GradientObservation
from privlab.training import dp

PerExample = Literal["vmap", "loop"]


def per_example_gradients(
    model: nn.Module,
    params: Gradients,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: PerExample = "vmap",
) -> Gradients:
    """∇_θ CE(f_θ(x_k), y_k) for every row k: name → tensor of shape (len(x), *param.shape).

    ``"vmap"`` is torch.func's vectorised grad over ``functional_call``; ``"loop"`` one autograd
    call per example (the reference). The model's buffers are used as they are, in its current
    mode; dropout draws different masks per example.
    """
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    names = list(params)

    def example_loss(p: Gradients, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    if method == "vmap":
        detached = {n: params[n].detach() for n in names}
        out: Gradients = vmap(grad(example_loss), in_dims=(None, 0, 0), randomness="different")(
            detached, x, y
        )
        return {n: out[n].detach() for n in names}
    if method != "loop":
        raise ValueError(f"unknown per-example method {method!r}; use 'vmap' or 'loop'")
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for k in range(len(x)):
        p = {n: params[n].detach().clone().requires_grad_(True) for n in names}
        loss = example_loss(p, x[k], y[k])
        grads = torch.autograd.grad(loss, [p[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads, strict=True):
            rows[n].append(torch.zeros_like(p[n]) if g is None else g.detach())
    return {n: torch.stack(rows[n]) for n in names}


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@DEFENCES.register("dp")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DPSGD(Defence):
    """DP-SGD client steps: per-example clipping to ``clip``, Gaussian noise σ·C, ÷ batch size.

    ``noise_multiplier`` = 0 gives per-example clipping alone. The model must not contain
    batch normalisation (an example's gradient would depend on the rest of the batch).
    ``per_example``: "vmap" (vectorised: for a model of linear layers only, the clipped sum
    from the layers' inputs and output gradients without per-example gradients, see
    :mod:`~privlab.federated.defences.linear_clipping`; otherwise torch.func's per-example
    gradients) or "loop" (one autograd call per example, the reference).
    """

    name: ClassVar[str] = "dp"
    acts_on_update: ClassVar[bool] = False
    clip: float = 1.0  # C
    noise_multiplier: float = 1.0  # σ; the noise std on the summed gradient is σ·C
    per_example: PerExample = "vmap"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a positive finite norm, got clip={self.clip}")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ValueError(f"noise_multiplier must be ≥ 0, got {self.noise_multiplier}")
        if self.per_example not in ("vmap", "loop"):
            raise ValueError(f"per_example must be 'vmap' or 'loop', got {self.per_example!r}")

    def noisy_gradient(
        self,
        model: nn.Module,
        params: Gradients,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None,
    ) -> Gradients:
        """One DP-SGD step's gradient g̃ on the mini-batch (x, y) at weights ``params``."""
        summed = (
            linear_clipped_sum(model, params, x, y, self.clip)
            if self.per_example == "vmap"
            else None
        )
        if summed is None:
            per = per_example_gradients(model, params, x, y, method=self.per_example)
            summed, _ = dp.clipped_sum(per, self.clip, stabiliser=0.0)  # exact clipping
        if self.noise_multiplier > 0:
            gen = require_generator(generator, "dp")
            summed = dp.add_noise(summed, self.noise_multiplier * self.clip, gen)
        return {n: s / len(x) for n, s in summed.items()}

    def apply(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        local_steps: int = 1,
        lr: float = 0.1,
        local_batch: int | None = None,
    ) -> GradientObservation:
        """The client's DP-SGD update; mini-batches cycle over (x, y) in order, as in
        :func:`~privlab.federated.client.client_update`."""
        check_client_args(x, y, local_steps, lr, local_batch)
        if _has_batch_norm(model):
            raise ValueError(
                "DP-SGD needs per-example gradients, which batch normalisation mixes across "
                "the batch: use a model without BatchNorm layers (e.g. GroupNorm)"
            )
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        batch = len(x) if local_batch is None else local_batch
        cursor = 0
        for _ in range(local_steps):
            rows = torch.arange(cursor, cursor + batch) % len(x)
            cursor = (cursor + batch) % len(x)
            g = self.noisy_gradient(model, params, x[rows], y[rows], generator)
            for n in params:
                total[n] += g[n]
                params[n] = params[n] - lr * g[n]
        return observation_of(total, len(x), local_steps, lr, local_batch)

    def epsilon(
        self, steps: int, sample_rate: float, delta: float, *, uses_per_step: int = 1
    ) -> float:
        """ε of ``steps`` compositions of the subsampled Gaussian mechanism at δ (Opacus' RDP
        accountant through :func:`privlab.training.dp.epsilon`, Poisson sampling at
        ``sample_rate``, add/remove neighbours).

        ``uses_per_step`` = k counts the noisy gradient steps an included example takes part
        in within one sampled step (e.g. one FedAvg round with several local steps over the
        round's batch): k adaptively composed Gaussian mechanisms of sensitivity C and noise
        σC are together a Gaussian mechanism of noise multiplier σ/√k (their privacy losses
        add up, as GDP μ = √k/σ), which is then subsampled once. One observed update of one
        batch, not subsampled, is ``epsilon(1, 1.0, delta)``.
        """
        if uses_per_step < 1:
            raise ValueError(f"uses_per_step must be ≥ 1, got {uses_per_step}")
        sigma = self.noise_multiplier / math.sqrt(uses_per_step)
        return dp.epsilon(sigma, sample_rate, steps, delta, "rdp")
