"""Adam and SGD (momentum, weight decay, cosine schedule) on K stacked models, update for update
as ``torch.optim`` would update each model, with an active mask for models that skip a step."""

from __future__ import annotations

import torch

from privlab.training.loop import TrainSpec

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults, which make_optimizer uses
ADAM_EPS = 1e-8

Params = dict[str, torch.Tensor]


class StackedOptimizer:
    """Adam / SGD(momentum) of torch.optim on K stacked models, with an active mask.

    A model whose ``active`` entry is False at a step is left exactly as it was: no
    parameter change, no moment decay, no step count.
    """

    def __init__(self, params: Params, spec: TrainSpec, k_count: int) -> None:
        self.spec = spec
        device = next(iter(params.values())).device
        self.steps = torch.zeros(k_count, device=device)
        self.state: dict[str, list[torch.Tensor]] = {}
        for name, p in params.items():
            if spec.optimizer == "adam":
                self.state[name] = [torch.zeros_like(p), torch.zeros_like(p)]
            elif spec.momentum != 0:
                self.state[name] = [torch.zeros_like(p)]
            else:
                self.state[name] = []

    @torch.no_grad()
    def step(self, params: Params, grads: Params, active: torch.Tensor, lr: float) -> None:
        spec = self.spec
        act = active.to(self.steps.dtype)
        first = self.steps == 0
        self.steps += act
        if spec.optimizer == "adam":
            beta1, beta2 = ADAM_BETAS
            t = self.steps.clamp(min=1)
            step_size = act * lr / (1 - beta1**t)
            bc2_sqrt = (1 - beta2**t).sqrt()
            w1, w2 = act * (1 - beta1), act * (1 - beta2)
        else:
            keep = torch.where(first, 0.0, spec.momentum) * act + (1 - act)
            lr_k = act * lr
        for name, p in params.items():
            view = (-1,) + (1,) * (p.dim() - 1)
            g = grads[name]
            if spec.weight_decay:
                g = g.add(p, alpha=spec.weight_decay)
            if spec.optimizer == "adam":
                m, v = self.state[name]
                m.lerp_(g, w1.view(view))
                v.mul_(1 - w2.view(view)).add_(g.square().mul_(w2.view(view)))
                denom = (v.sqrt() / bc2_sqrt.view(view)).add_(ADAM_EPS)
                p.sub_(m.div(denom).mul_(step_size.view(view)))
            elif spec.momentum != 0:
                (buf,) = self.state[name]
                buf.mul_(keep.view(view)).add_(g * act.view(view))
                p.sub_(buf * lr_k.view(view))
            else:
                p.sub_(g * lr_k.view(view))


def learning_rates(spec: TrainSpec) -> list[float]:
    """The learning rate of every epoch, from torch's own scheduler (bit-identical)."""
    if spec.schedule != "cosine":
        return [spec.lr] * spec.epochs
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=spec.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.epochs)
    rates = []
    for _ in range(spec.epochs):
        rates.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return rates
