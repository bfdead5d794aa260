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
    """Minimise the regularised objective above with L-BFGS in float64 (to the optimum the
    attack assumes); returns the model in float64."""
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

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    for _ in range(5):  # restarts: L-BFGS stops on its iteration budget
        opt.step(closure)
    return model


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
