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

    def reconstruct(self, target: Target, fixed: Split) -> Reconstruction:
        """Recover (x, y) of the training point missing from ``fixed`` (= D₋)."""
        target.require(self.requires, f"attack {self.name!r}")
        start = time.perf_counter()
        params = target.parameters()
        weights = [v for k, v in params.items() if k.endswith("weight")]
        biases = [v for k, v in params.items() if k.endswith("bias")]
        if len(weights) != 1 or len(biases) != 1 or weights[0].dim() != 2:
            raise ValueError(
                f"{self.name} needs a softmax regression (one Linear layer); the target has "
                f"parameters {sorted(params)}"
            )
        w, b = weights[0].double().cpu(), biases[0].double().cpu()
        x = fixed.x.reshape(len(fixed), -1).double()
        residual = (x @ w.T + b).softmax(1) - F.one_hot(fixed.y, w.shape[0]).double()
        n = len(fixed) + 1
        g_w = -n * self.l2 * w - residual.T @ x
        g_b = -residual.sum(0)
        j = int(g_b.abs().argmax())
        image = (g_w[j] / g_b[j]).float().reshape(1, *fixed.x.shape[1:])
        label = int(g_b.argmin())
        return Reconstruction(
            images=image,
            labels=torch.tensor([label]),
            confidence=torch.tensor([float(-g_b[label])]),  # 1 − p_y at the optimum
            seconds=time.perf_counter() - start,
        )

    def params(self) -> dict[str, float]:
        return {"l2": self.l2}
