"""Closed-form reconstruction from an L2-regularised softmax regression (Balle et al. 2022).

The informed adversary knows every training point but one (the fixed set D₋), the training
objective and its regularisation, and sees the released weights θ = (W, b) of a model trained
to the optimum of

    (1/n)·Σ_{(x, y) ∈ D₋ ∪ {z}} CE(Wx + b, y) + (λ/2)·‖W‖²    (bias not regularised).

At the optimum the gradient vanishes, so the target's own gradient is known:

    g_W = −n·λ·W − Σ_{D₋} (p_i − e_{y_i}) x_iᵀ,    g_b = −Σ_{D₋} (p_i − e_{y_i}),

and for softmax regression g_W = (p − e_y) xᵀ, g_b = p − e_y. Hence x = g_W[j, :] / g_b[j] for
any class j with g_b[j] ≠ 0 (the largest |g_b[j]| is the most stable), and y is the one class
with g_b[y] = p_y − 1 < 0. With more than one unknown point the system is underdetermined (the
paper's remark that convex attacks need N = 1).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks.inversion.base import Reconstruction
from privlab.data.bundle import Split
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target


def softmax_regression(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The convex model: flatten → Linear (multinomial logistic regression)."""
    d = 1
    for s in input_shape:
        d *= int(s)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, num_classes))


def train_to_optimum(
    model: nn.Sequential, data: Split, *, l2: float, max_iter: int = 500, tol: float = 1e-12
) -> nn.Sequential:
    """Minimise the regularised objective above in float64, to the optimum the attack assumes:
    L-BFGS, then Newton steps (conjugate gradients on Hessian-vector products) until the
    largest gradient entry is below ``tol``. L-BFGS alone stalls near 1e-8 on MNIST, where
    the loss no longer changes in float64; a well-fitted unknown point (1 − p_y ≈ 1e-6) turns
    that residual into a visible error in x = g_W / g_b."""
    model = model.double()
    x, y = data.x.double(), data.y
    params = list(model.parameters())
    opt = torch.optim.LBFGS(
        params,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )
    linear = model[-1]
    assert isinstance(linear, nn.Linear)

    def objective() -> torch.Tensor:
        return F.cross_entropy(model(x), y) + 0.5 * l2 * linear.weight.pow(2).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)  # near the optimum; Newton finishes it
    _newton_polish(objective, params, tol=tol)
    return model


def _newton_polish(
    objective: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    tol: float,
    steps: int = 8,
    cg_iters: int = 2000,
) -> None:
    """Newton steps on a strictly convex ``objective`` near its optimum: each solves H·d = −g
    by conjugate gradients on exact Hessian-vector products. Stops once max |g| ≤ tol, or
    when a step no longer lowers it (float64's floor), keeping the best point."""
    best, kept = float("inf"), list[torch.Tensor]()  # the first point is always kept
    for taken in range(steps + 1):
        grads = torch.autograd.grad(objective(), params, create_graph=True)
        g = torch.cat([v.reshape(-1) for v in grads])
        size = float(g.detach().abs().max())
        if size >= best:  # float64's floor: back to the best point
            with torch.no_grad():
                for p, k in zip(params, kept, strict=True):
                    p.copy_(k)
            return
        if size <= tol or taken == steps:
            return
        best, kept = size, [p.detach().clone() for p in params]

        def hvp(v: torch.Tensor, g: torch.Tensor = g) -> torch.Tensor:
            hv = torch.autograd.grad(g, params, v, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hv])

        step = _conjugate_gradients(hvp, -g.detach(), iters=cg_iters)
        with torch.no_grad():
            offset = 0
            for p in params:
                p += step[offset : offset + p.numel()].view_as(p)
                offset += p.numel()


def _conjugate_gradients(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, iters: int
) -> torch.Tensor:
    """Solve A·x = b for a symmetric positive definite A given as ``matvec`` (to a residual
    1e-10 of ‖b‖, or ``iters`` steps)."""
    x = torch.zeros_like(b)
    r, d = b.clone(), b.clone()
    rr = r @ r
    stop = float(rr) * 1e-20
    for _ in range(iters):
        if float(rr) <= stop:
            break
        ad = matvec(d).detach()
        alpha = rr / (d @ ad)
        x += alpha * d
        r -= alpha * ad
        rr_next = r @ r
        d = r + (rr_next / rr) * d
        rr = rr_next
    return x


def _softmax_residuals(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """p − e_y of every row (float64), x already flattened."""
    return (x @ w.T + b).softmax(1) - F.one_hot(y, w.shape[0]).double()


def _solve(g_w: torch.Tensor, g_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, 1 − p_y) of each row of the unknown points' gradients g_W (k × C × d), g_b (k × C):
    x = g_W[j] / g_b[j] for the class j with the largest |g_b[j]|, y the class with g_b < 0."""
    j = g_b.abs().argmax(1)
    rows = torch.arange(len(g_b))
    labels = g_b.argmin(1)
    return g_w[rows, j] / g_b[rows, j, None], labels, -g_b[rows, labels]


@ATTACKS.register("closed_form_softmax")
@dataclasses.dataclass(kw_only=True)
class ClosedFormSoftmax:
    """Informed adversary: exact recovery of the one unknown point of a softmax regression."""

    name: ClassVar[str] = "closed_form_softmax"
    family: ClassVar[str] = "reconstruction"
    requires: ClassVar[Access] = Access.WEIGHTS
    needs_reference: ClassVar[bool] = False
    needs_reference_models: ClassVar[bool] = False
    l2: float = 1e-3  # the training objective's λ (known to the informed adversary)
    #: the bias is regularised too (torch's ``weight_decay`` on every parameter)
    bias_l2: bool = False

    def linear(self, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax regression's (W, b) in float64, or a ValueError naming what the target
        has instead."""
        target.require(self.requires, f"attack {self.name!r}")
        params = target.parameters()
        weights = [v for k, v in params.items() if k.endswith("weight")]
        biases = [v for k, v in params.items() if k.endswith("bias")]
        if len(params) != 2 or len(weights) != 1 or len(biases) != 1 or weights[0].dim() != 2:
            raise ValueError(
                f"{self.name} needs a softmax regression (one Linear layer); the target has "
                f"parameters {sorted(params)}"
            )
        return weights[0].detach().double().cpu(), biases[0].detach().double().cpu()

    def _regulariser(
        self, w: torch.Tensor, b: torch.Tensor, n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n·λ·(W, b): the regulariser's part of the summed gradient at the optimum."""
        return n * self.l2 * w, (n * self.l2 * b if self.bias_l2 else torch.zeros_like(b))

    def reconstruct(self, target: Target, fixed: Split) -> Reconstruction:
        """Recover (x, y) of the training point missing from ``fixed`` (= D₋)."""
        start = time.perf_counter()
        w, b = self.linear(target)
        x = fixed.x.reshape(len(fixed), -1).double()
        residual = _softmax_residuals(w, b, x, fixed.y)
        reg_w, reg_b = self._regulariser(w, b, len(fixed) + 1)
        image, label, confidence = _solve(
            (-reg_w - residual.T @ x)[None], (-reg_b - residual.sum(0))[None]
        )
        return Reconstruction(
            images=image.float().reshape(1, *fixed.x.shape[1:]),
            labels=label,
            confidence=confidence.float(),  # 1 − p_y at the optimum
            seconds=time.perf_counter() - start,
        )

    def reconstruct_each(
        self, target: Target, data: Split, indices: torch.Tensor
    ) -> Reconstruction:
        """Every ``data[i]`` (i in ``indices``) recovered as the unknown point of a model trained
        on all of ``data``, D₋ being the rest: the same computation as :meth:`reconstruct` with
        ``fixed`` = data minus row i, done once for all rows (the sum over D₋ is the sum over
        ``data`` minus row i's own term)."""
        start = time.perf_counter()
        w, b = self.linear(target)
        x = data.x.reshape(len(data), -1).double()
        residual = _softmax_residuals(w, b, x, data.y)
        reg_w, reg_b = self._regulariser(w, b, len(data))
        rows = indices.long()
        own_w = residual[rows, :, None] * x[rows, None, :]
        g_w = -reg_w - (residual.T @ x) + own_w
        g_b = -reg_b - residual.sum(0) + residual[rows]
        images, labels, confidence = _solve(g_w, g_b)
        return Reconstruction(
            images=images.float().reshape(len(rows), *data.x.shape[1:]),
            labels=labels,
            confidence=confidence.float(),
            seconds=time.perf_counter() - start,
        )

    def stationarity(self, target: Target, data: Split) -> float:
        """How far the released weights are from the optimum the attack assumes: the norm of
        the objective's summed gradient on ``data`` over the sum of the per-example gradient
        norms (0 at the exact optimum; the attack's error grows with it)."""
        w, b = self.linear(target)
        x = data.x.reshape(len(data), -1).double()
        residual = _softmax_residuals(w, b, x, data.y)
        reg_w, reg_b = self._regulariser(w, b, len(data))
        total = torch.cat([(residual.T @ x + reg_w).flatten(), residual.sum(0) + reg_b])
        scale = (residual.norm(dim=1) * (x.norm(dim=1).pow(2) + 1).sqrt()).sum()
        return float(total.norm() / scale.clamp_min(1e-300))

    def params(self) -> dict[str, float | bool]:
        return {"l2": self.l2, "bias_l2": self.bias_l2}
