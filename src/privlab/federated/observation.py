"""What an honest-but-curious server sees from one client update (Liu et al. 2025, §2).

The server knows the global model θ₀ (architecture and weights) and receives one client's
update. With one local step on a batch {(x_k, y_k)}_{k=1..B} of the mean cross-entropy ℓ, the
update is the gradient

    G = ∇_θ (1/B)·Σ_k ℓ(f_θ₀(x_k), y_k).

With several local SGD steps (FedAvg) at learning rate η the client sends θ_end, and the server
observes the pseudo-gradient G = (θ₀ − θ_end)/η, which equals the gradient above when there is
one full-batch step. A defence (noise, pruning, clipping) acts on G before the server sees it.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class GradientObservation:
    """One client's (possibly defended) update as the server receives it.

    ``gradients`` maps every parameter name of ``model.named_parameters()`` to a tensor of that
    parameter's shape. ``local_steps`` > 1 means FedAvg: the tensors are (θ₀ − θ_end)/``lr``
    after ``local_steps`` SGD steps on mini-batches of ``local_batch`` examples (the whole batch
    when None), taken in order and cycling. ``labels_known`` says the server also knows the
    batch's labels (``labels``, e.g. from side information); otherwise attacks infer them.
    """

    gradients: dict[str, torch.Tensor]
    batch_size: int
    local_steps: int = 1
    lr: float | None = None
    labels_known: bool = False
    labels: torch.Tensor | None = None
    local_batch: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.local_steps < 1:
            raise ValueError(f"local_steps must be ≥ 1, got {self.local_steps}")
        if self.local_steps > 1 and (self.lr is None or not self.lr > 0):
            raise ValueError(
                f"a {self.local_steps}-step update needs the client's positive learning rate "
                f"lr (the observation is (θ₀ − θ_end)/lr), got {self.lr}"
            )
        if self.local_batch is not None and not 1 <= self.local_batch <= self.batch_size:
            raise ValueError(
                f"local_batch must be in 1..batch_size={self.batch_size}, got {self.local_batch}"
            )
        if self.labels_known:
            if self.labels is None or self.labels.shape != (self.batch_size,):
                shape = None if self.labels is None else tuple(self.labels.shape)
                raise ValueError(
                    f"labels_known=True needs labels of shape ({self.batch_size},), got {shape}"
                )
        elif self.labels is not None:
            raise ValueError("labels were given but labels_known=False; set labels_known=True")

    def with_gradients(self, gradients: dict[str, torch.Tensor]) -> GradientObservation:
        """The same observation with other tensors (what a defence returns)."""
        return dataclasses.replace(self, gradients=gradients)

    def norm(self) -> float:
        """‖G‖₂ over all parameters together."""
        return math.sqrt(sum(float(g.double().pow(2).sum()) for g in self.gradients.values()))


def check_observation(model: nn.Module, obs: GradientObservation) -> None:
    """Refuse an observation that does not fit ``model``, naming the offending parameter.

    Names must be exactly those of ``model.named_parameters()`` (a missing or extra name means
    the update came from a different architecture), shapes must agree, and every entry must be
    finite: a NaN or infinite gradient is rejected rather than optimised against.
    """
    expected = dict(model.named_parameters())
    missing = [n for n in expected if n not in obs.gradients]
    extra = [n for n in obs.gradients if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing gradient(s) for {missing}")
        if extra:
            parts.append(f"gradient(s) for unknown parameter(s) {extra}")
        raise ValueError(
            "observation does not match the model: "
            + "; ".join(parts)
            + f". The model has parameters {list(expected)}: the update looks like it comes "
            "from a different architecture"
        )
    for name, param in expected.items():
        grad = obs.gradients[name]
        if not isinstance(grad, torch.Tensor):
            raise ValueError(f"gradient of {name!r} is a {type(grad).__name__}, not a tensor")
        if tuple(grad.shape) != tuple(param.shape):
            raise ValueError(
                f"gradient of {name!r} has shape {tuple(grad.shape)} but the model's parameter "
                f"has shape {tuple(param.shape)}: the model looks like a different architecture"
            )
        if not bool(torch.isfinite(grad).all()):
            raise ValueError(
                f"NaN or infinite gradient in {name!r}: rejected, not optimised against"
            )
