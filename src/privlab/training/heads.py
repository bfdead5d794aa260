"""Transfer-learned heads trained by the thousand (Maciazek & Allison, Table 3 and Algorithm 1).

A frozen feature extractor turns each image into a feature vector; only a small head is
trained on a tiny private set (N = 10–40 images), by full-batch gradient descent without
momentum, weights drawn from N(0, σ²_init), biases 0, L2 weight decay, for 26 + 3N/5 epochs (the
MNIST recipe). Shadow models for the weak adversary are many such heads, each trained on its own
random set, so they are trained as one stacked ensemble: parameters K × …, features K × N × F,
and ``torch.func.vmap`` over a per-head loss gradient. :func:`train_heads_loop` trains the same
heads one by one with ``torch.optim.SGD`` (the reference the ensemble must match). The
ensemble back-propagates explicitly with batched matmuls (``baddbmm`` / ``bmm``): vmap over an
autograd gradient reached 4 % of this machine's matmul rate, explicit batched products far more.

Heads: ``hidden=None`` is FC(outputs); ``hidden=h`` is FC(h) → ReLU → FC(outputs). With one
output the loss is binary cross-entropy with an optional positive-class weight (the CelebA
recipe), otherwise cross-entropy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.func import functional_call

from privlab.training import dp as dpsgd

Params = dict[str, torch.Tensor]


class HeadSpec(BaseModel):
    """The head and its training recipe (defaults: the MNIST column of Table 3); also the
    config's ``head:`` block (one copy of these fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outputs: int = Field(10, ge=1)
    hidden: int | None = Field(None, ge=1)
    sigma_init: float = Field(0.002, ge=0)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    epochs: int | None = Field(None, ge=0)  # None: 26 + 3N/5
    pos_weight: float = Field(1.0, gt=0)  # binary heads: weight of the positive class

    def epochs_for(self, n: int) -> int:
        return self.epochs if self.epochs is not None else 26 + (3 * n) // 5


def build_head(spec: HeadSpec, features: int) -> nn.Sequential:
    """The head as a module (its parameter names are those of the stacked ensembles)."""
    if spec.hidden is None:
        return nn.Sequential(nn.Linear(features, spec.outputs))
    return nn.Sequential(
        nn.Linear(features, spec.hidden), nn.ReLU(), nn.Linear(spec.hidden, spec.outputs)
    )


def init_heads(spec: HeadSpec, count: int, features: int, *, generator: torch.Generator) -> Params:
    """``count`` stacked initialisations: weights N(0, σ²_init), biases 0."""
    template = build_head(spec, features)
    out: Params = {}
    for name, p in template.named_parameters():
        if name.endswith("bias"):
            out[name] = torch.zeros(count, *p.shape)
        else:
            out[name] = spec.sigma_init * torch.randn(count, *p.shape, generator=generator)
    return out


def head_loss(spec: HeadSpec) -> Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-head training loss (mean over its N examples) as a function of its parameters."""
    template = build_head(spec, 1)  # only used for functional_call's structure

    def loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(template, params, (x,))
        if spec.outputs == 1:
            weight = torch.where(y == 1, spec.pos_weight, 1.0).to(logits.dtype)
            return F.binary_cross_entropy_with_logits(
                logits[:, 0], y.to(logits.dtype), weight=weight
            )
        return F.cross_entropy(logits, y)

    return loss


def _logit_loss(spec: HeadSpec, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ over heads of each head's mean loss (so d/dlogits is each head's own gradient)."""
    if spec.outputs == 1:
        weight = torch.where(y == 1, spec.pos_weight, 1.0).to(logits.dtype)
        per = F.binary_cross_entropy_with_logits(
            logits[..., 0], y.to(logits.dtype), weight=weight, reduction="none"
        )
    else:
        per = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    return per.mean(1).sum()


def _layers(spec: HeadSpec) -> list[str]:
    return ["0"] if spec.hidden is None else ["0", "2"]


def _forward(spec: HeadSpec, params: Params, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every layer, then the logits (K heads at once, batched matmuls)."""
    layers = _layers(spec)
    acts = [x]
    for i, name in enumerate(layers):
        z = torch.baddbmm(
            params[f"{name}.bias"][:, None, :], acts[-1], params[f"{name}.weight"].transpose(1, 2)
        )
        acts.append(z.relu() if i < len(layers) - 1 else z)
    return acts


def _layer_grads(
    spec: HeadSpec, params: Params, acts: list[torch.Tensor], g: torch.Tensor
) -> list[torch.Tensor]:
    """Explicit back-propagation of the per-example logit gradients ``g`` (K × N × C): the
    per-example gradient of every layer's output, in the layers' order."""
    layers = _layers(spec)
    out = [g]
    for i in reversed(range(1, len(layers))):  # through the ReLU below layer i
        out.append(torch.bmm(out[-1], params[f"{layers[i]}.weight"]) * (acts[i] > 0))
    return out[::-1]


def _backward(spec: HeadSpec, params: Params, acts: list[torch.Tensor], g: torch.Tensor) -> Params:
    """The gradients summed over the N examples (a layer's weight gradient is Σ g·aᵀ)."""
    grads: Params = {}
    layers, per_layer = _layers(spec), _layer_grads(spec, params, acts, g)
    for i in reversed(range(len(layers))):  # the last layer's first: DP noise is drawn in order
        grads[f"{layers[i]}.weight"] = torch.bmm(per_layer[i].transpose(1, 2), acts[i])
        grads[f"{layers[i]}.bias"] = per_layer[i].sum(1)
    return grads


def _sq_grad_norms(
    spec: HeadSpec,
    params: Params,
    acts: list[torch.Tensor],
    g: torch.Tensor,
    input_sq: torch.Tensor,
) -> torch.Tensor:
    """Every example's squared gradient norm (K × N): a layer's weight gradient is the outer
    product g·aᵀ, so its squared norm is ‖g‖²·‖a‖², and its bias adds ‖g‖². ``input_sq``:
    the inputs' ‖a‖² (K × N), fixed through training, so computed once: over 784 features
    it was half of a DP-SGD step."""
    sq_norms = torch.zeros(g.shape[:2], dtype=g.dtype, device=g.device)
    per_layer = _layer_grads(spec, params, acts, g)
    for i in reversed(range(len(per_layer))):  # last layer first: the order earlier runs summed in
        a_sq = input_sq if i == 0 else acts[i].pow(2).sum(2)
        sq_norms += per_layer[i].pow(2).sum(2) * (a_sq + 1)
    return sq_norms


def _gradients(spec: HeadSpec, params: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
    """Per-head gradients by explicit back-propagation with batched matmuls (K heads at once)."""
    acts = _forward(spec, params, x)
    logits = acts[-1].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(_logit_loss(spec, logits, y), logits)
    return _backward(spec, params, acts, g)


def train_heads(
    spec: HeadSpec, params: Params, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 256
) -> Params:
    """Full-batch GD on K heads at once: ``x`` K × N × F, ``y`` K × N, ``params`` stacked.

    Heads are independent, so they train in chunks of ``chunk`` through every epoch: a chunk's
    features stay in cache across epochs (3× faster than all K at once on a 2-core CPU).
    """
    if x.dim() != 3 or y.shape != x.shape[:2]:
        raise ValueError(f"need x of shape K×N×F and y of shape K×N, got {x.shape}, {y.shape}")
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in params}
    decay = 1 - spec.lr * spec.weight_decay
    with torch.no_grad():
        for lo in range(0, x.shape[0], chunk):
            part = {k: v[lo : lo + chunk].clone() for k, v in params.items()}
            xs, ys = x[lo : lo + chunk], y[lo : lo + chunk]
            for _ in range(spec.epochs_for(x.shape[1])):
                with torch.enable_grad():
                    grads = _gradients(spec, part, xs, ys)
                for k, g in grads.items():
                    # torch's SGD without momentum: p − lr·(g + wd·p), updated in place
                    part[k].mul_(decay).add_(g, alpha=-spec.lr)
            for k, v in part.items():
                out[k].append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def train_heads_loop(spec: HeadSpec, params: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
    """The same heads trained one by one with ``torch.optim.SGD`` (the reference)."""
    loss_fn = head_loss(spec)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in params}
    for i in range(x.shape[0]):
        head = build_head(spec, x.shape[2])
        with torch.no_grad():
            for name, p in head.named_parameters():
                p.copy_(params[name][i])
        opt = torch.optim.SGD(head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        for _ in range(spec.epochs_for(x.shape[1])):
            opt.zero_grad()
            loss_fn(dict(head.named_parameters()), x[i], y[i]).backward()
            opt.step()
        for name, p in head.named_parameters():
            out[name].append(p.detach().clone())
    return {k: torch.stack(v) for k, v in out.items()}


@torch.no_grad()
def head_logits(spec: HeadSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """K × P × outputs: every stacked head applied to the same P feature vectors ``x``."""
    layers = ["0"] if spec.hidden is None else ["0", "2"]
    h = x.expand(len(params[f"{layers[0]}.weight"]), *x.shape)
    for i, name in enumerate(layers):
        h = torch.baddbmm(
            params[f"{name}.bias"][:, None, :], h, params[f"{name}.weight"].transpose(1, 2)
        )
        if i < len(layers) - 1:
            h = h.relu()
    return h


def flatten_heads(params: Params) -> torch.Tensor:
    """K × D_Θ: each head's parameters as one vector (the reconstructor's input)."""
    return torch.cat([v.reshape(v.shape[0], -1) for v in params.values()], dim=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeadDP:
    """DP-SGD for heads (Maciazek & Allison, App. E, with Opacus): a data loader of batch size
    B = N − 1 under Opacus' Poisson sampling has ⌈N/B⌉ batches per epoch, each drawn with rate
    q = 1/⌈N/B⌉; every example's gradient is clipped to ``clip``, Gaussian noise of std
    ``noise_multiplier``·``clip`` is added to the sum, and the sum is divided by the expected
    batch size q·N (Opacus' ``expected_batch_size``). δ = N^−1.1. Clipping, noise, sampling
    and accounting are :mod:`privlab.training.dp`'s (RDP accountant)."""

    clip: float = 4.0
    noise_multiplier: float = 1.0

    @staticmethod
    def batches_per_epoch(n: int) -> int:
        return -(-n // max(n - 1, 1))

    @staticmethod
    def sample_rate(n: int) -> float:
        return 1.0 / HeadDP.batches_per_epoch(n)

    @staticmethod
    def delta(n: int) -> float:
        return float(n) ** -1.1

    def epsilon(self, n: int, epochs: int) -> float:
        """ε at δ = N^−1.1 from Opacus' RDP accountant."""
        steps = epochs * self.batches_per_epoch(n)
        return dpsgd.epsilon(
            self.noise_multiplier, self.sample_rate(n), steps, self.delta(n), "rdp"
        )

    @staticmethod
    def noise_for(eps: float, n: int, epochs: int) -> float:
        """The noise multiplier that spends ``eps`` (Opacus' calibration; seconds per call
        at q = 1/2, so :func:`privlab.training.dp.noise_multiplier_for` memoises calls)."""
        steps = epochs * HeadDP.batches_per_epoch(n)
        return dpsgd.noise_multiplier_for(
            eps, HeadDP.delta(n), HeadDP.sample_rate(n), steps=steps, accountant="rdp"
        )


def train_heads_dp(
    spec: HeadSpec,
    dp: HeadDP,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
) -> Params:
    """DP-SGD on K cross-entropy heads at once, single-layer or Linear → ReLU → Linear, with
    explicit per-sample gradients (:func:`_sq_grad_norms`: each example's gradient norm from its
    per-layer outer products). Every step adds noise, whether its Poisson batch is empty or
    not."""
    if spec.outputs < 2:
        raise ValueError("train_heads_dp supports cross-entropy heads (outputs ≥ 2)")
    k, n, _ = x.shape
    q = dp.sample_rate(n)
    params = {name: v.clone() for name, v in params.items()}
    onehot = F.one_hot(y, spec.outputs).to(x.dtype)
    std = dp.noise_multiplier * dp.clip
    decay = 1 - spec.lr * spec.weight_decay
    input_sq = x.pow(2).sum(2)
    for _ in range(spec.epochs_for(n) * dp.batches_per_epoch(n)):
        acts = _forward(spec, params, x)
        g = acts[-1].softmax(2) - onehot  # per-sample dℓ/dlogits, K × N × C
        sq_norms = _sq_grad_norms(spec, params, acts, g, input_sq)
        factor = dpsgd.clip_factors(sq_norms.sqrt(), dp.clip, stabiliser=0.0)
        chosen = dpsgd.poisson_mask((k, n), q, generator).to(x.dtype)
        summed = _backward(spec, params, acts, g * (factor * chosen)[..., None])
        noisy = dpsgd.add_noise(summed, std, generator)
        params = {name: v * decay - spec.lr / (q * n) * noisy[name] for name, v in params.items()}
    return params
