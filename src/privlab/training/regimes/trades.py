"""TRADES, the "diff-based" adversarial training of Song et al. (Zhang et al. 2019, Eqs. 11–12)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from privlab.registry import REGIMES
from privlab.training.perturbations import maximise
from privlab.training.regime import Regime, attack_mode


def _kl(adv_logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    """Per-example KL(F(x) ‖ F(x_adv)) as in the TRADES reference implementation."""
    return F.kl_div(F.log_softmax(adv_logits, dim=1), clean_probs, reduction="none").sum(1)


@REGIMES.register("trades")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Trades(Regime):
    """CE(F(x), y) + β·KL(F(x) ‖ F(x_adv)), x_adv maximising the KL inside the L∞ ε-ball.

    The inner maximisation starts from x + 0.001·N(0, I) (Zhang et al.) with signed steps.
    """

    name = "trades"
    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None
    beta: float = 6.0

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            with torch.no_grad():
                clean_probs = model(x).softmax(dim=1)
            init = (x + 0.001 * torch.randn_like(x)).clamp(*self.clip)
            x_adv = maximise(
                lambda z: _kl(model(z), clean_probs),
                x,
                eps=self.eps,
                steps=self.steps,
                step_size=self.step_size,
                clip=self.clip,
                init=init,
            )
        logits = model(x)
        robust = _kl(model(x_adv), logits.softmax(dim=1)).mean()
        return F.cross_entropy(logits, y) + self.beta * robust
