"""Gradient inversion: recover a client's training batch from its federated update.

The honest-but-curious server knows the model f_θ and observes G = ∇_θ L(x*, y*) (or the
FedAvg pseudo-gradient, see :mod:`privlab.federated.observation`). Optimisation attacks search
for dummy inputs x̂ (and labels ŷ) whose simulated update matches G:

    min_x̂  D(∇_θ L(x̂, ŷ), G) + λ_TV·TV(x̂),

with D the squared Euclidean distance (DLG, Zhu et al. 2019) or the cosine distance (Geiping et
al. 2020). Labels come first from the last layer's gradient (iDLG, Zhao et al. 2020): for the
mean cross-entropy, ∂L/∂b = (1/B)·Σ_k (p_k − e_{y_k}) and ∂L/∂W = (1/B)·Σ_k (p_k − e_{y_k}) h_kᵀ,
so with one example only the true class has a negative bias gradient (p_y − 1 < 0, every other
entry p_c > 0), and, when the layer's input h is non-negative (after a ReLU), the only row of
∂L/∂W with a negative sum.

Every attack here is a dataclass registered in ``ATTACKS`` whose fields are its hyperparameters;
``invert(target, obs, seed=…)`` takes the global model as a :class:`~privlab.threat_model.Target`
(:func:`server_target` builds the server's: weights and clients' updates), refuses a target
that does not grant the attack's ``requires``, reads the input shape, class count and value
range off ``target.info``, and checks the observation against the model first
(:func:`~privlab.federated.observation.check_observation`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from privlab.federated.observation import GradientObservation, check_observation
from privlab.threat_model import Access, Target, TargetInfo

MatchingLoss = Literal["l2", "cosine"]


@dataclasses.dataclass(frozen=True)
class GradientInversionResult:
    """Reconstructed inputs (B × C × H × W, in the value range) and their labels (B)."""

    images: torch.Tensor
    labels: torch.Tensor
    seconds: float = 0.0
    history: list[float] = dataclasses.field(default_factory=list)  # matching loss per step
    matching_loss: float = math.nan  # final gradient-matching loss of the returned images

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"images and labels must have one row each, got {len(self.images)} and "
                f"{len(self.labels)}"
            )


# ---------------------------------------------------------------------------- label recovery


def _param_name(module_name: str, attr: str) -> str:
    return f"{module_name}.{attr}" if module_name else attr


def last_linear(model: nn.Module) -> tuple[str, str | None]:
    """Parameter names (weight, bias or None) of the last ``nn.Linear`` (assumed to give the
    logits)."""
    found: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise ValueError(
            "label recovery from gradients needs a model whose logits come from an nn.Linear "
            "layer; this model has none"
        )
    name, layer = found
    bias = _param_name(name, "bias") if layer.bias is not None else None
    return _param_name(name, "weight"), bias


def label_scores(obs: GradientObservation, model: nn.Module) -> torch.Tensor:
    """Per-class score s_c of the last layer: ∂L/∂b_c, or Σ_j ∂L/∂W_cj without a bias.

    Negative scores mark classes present in the batch: ∂L/∂b_c = (Σ_k p_kc − n_c)/B is
    negative exactly when the n_c examples of class c outweigh the probability mass the model
    puts on c. The row sum has the same sign pattern for B = 1 when the layer input is ≥ 0.
    """
    weight, bias = last_linear(model)
    if bias is not None:
        return obs.gradients[bias].detach().double().reshape(-1)
    return obs.gradients[weight].detach().double().sum(1)


def idlg_labels(obs: GradientObservation, model: nn.Module) -> torch.Tensor:
    """The batch's labels (sorted by class) recovered from the last layer's gradient.

    B = 1 (iDLG): the class with the most negative score (see :func:`label_scores`); exact for
    the true gradient of a model whose last layer has a bias, or whose last-layer input is
    non-negative.

    B > 1: the classes with negative scores, most negative first. With at least B of them,
    the B most negative. With k < B of them, every negative class gets one slot and the B − k
    remaining slots repeat classes in proportion to their magnitude: each occurrence of a class
    adds about −(1 − p)/B to its score, so class c is estimated to hold n̂_c = B·|s_c| / Σ|s_neg|
    examples, and the spare slots go one at a time to the class with the largest n̂_c − (slots
    already given). With no negative score at all (a heavily defended gradient) the most
    negative class takes every slot. The result is a multiset: its order says nothing about the
    order of the batch.
    """
    scores = label_scores(obs, model)
    batch = obs.batch_size
    order = torch.argsort(scores, stable=True)
    negative = [int(c) for c in order if scores[c] < 0]
    if not negative:
        negative = [int(order[0])]
    if len(negative) >= batch:
        return torch.tensor(sorted(negative[:batch]), dtype=torch.long)
    mags = torch.stack([scores[c].abs() for c in negative])
    total = float(mags.sum())
    if total > 0:
        quota = batch * mags / total
    else:
        quota = torch.full((len(negative),), batch / len(negative), dtype=torch.float64)
    counts = torch.ones(len(negative), dtype=torch.float64)
    for _ in range(batch - len(negative)):
        counts[int(torch.argmax(quota - counts))] += 1
    labels = [c for c, n in zip(negative, counts.tolist(), strict=True) for _ in range(int(n))]
    return torch.tensor(sorted(labels), dtype=torch.long)


# ----------------------------------------------------------------------------------- losses


def gradient_matching_loss(
    dummy: Sequence[torch.Tensor], observed: Sequence[torch.Tensor], kind: MatchingLoss = "l2"
) -> torch.Tensor:
    """Distance between simulated and observed updates, tensor by tensor in parameter order.

    ``"l2"`` (DLG): Σ_layers ‖g_l − G_l‖².

    ``"cosine"`` (Geiping et al. 2020, Eq. 4): 1 − ⟨g, G⟩ / (‖g‖·‖G‖) over the whole update
    flattened into one vector (the paper's form, and the default of its code: layers weighted
    by their share of the norm, not equally). It ignores the gradient's scale, which a trained
    model's small gradients and norm-changing defences make unreliable.
    """
    if len(dummy) != len(observed):
        raise ValueError(f"{len(dummy)} simulated tensors for {len(observed)} observed ones")
    pairs = list(zip(dummy, observed, strict=True))
    if kind == "l2":
        return torch.stack([(d - o).pow(2).sum() for d, o in pairs]).sum()
    if kind == "cosine":
        dot = torch.stack([(d * o).sum() for d, o in pairs]).sum()
        dn = torch.stack([d.pow(2).sum() for d, _ in pairs]).sum()
        on = torch.stack([o.pow(2).sum() for _, o in pairs]).sum()
        tiny = torch.finfo(dn.dtype).tiny
        return 1 - dot / (dn.clamp_min(tiny).sqrt() * on.clamp_min(tiny).sqrt())
    raise ValueError(f"unknown matching loss {kind!r}; use 'l2' or 'cosine'")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of a B × C × H × W batch: mean |horizontal step| + mean |vertical step|
    (Geiping et al.'s prior; 0 for a constant image)."""
    tv = torch.zeros((), dtype=x.dtype)
    if x.shape[-1] > 1:
        tv = tv + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    if x.shape[-2] > 1:
        tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return tv


# ---------------------------------------------------------------------- simulated update

LossOnLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, rows) → loss


def hard_label_loss(labels: torch.Tensor) -> LossOnLogits:
    """Mean cross-entropy with fixed labels (what the client computes)."""
    return lambda logits, rows: F.cross_entropy(logits, labels[rows])


def soft_label_loss(label_logits: torch.Tensor) -> LossOnLogits:
    """Mean cross-entropy against softmax(label_logits) (DLG's learnt soft labels)."""

    def loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        target = label_logits[rows].softmax(-1)
        return -(target * logits.log_softmax(-1)).sum(-1).mean()

    return loss


def model_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the weights with gradients enabled (the model is left untouched)."""
    return {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}


def simulated_update(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    loss_fn: LossOnLogits,
    obs: GradientObservation,
) -> list[torch.Tensor]:
    """What the client would send for inputs ``x``, differentiable in ``x`` (create_graph).

    One step: ∇_θ L(x) on the first ``local_batch`` rows (all rows by default). Several steps:
    the client's SGD unrolled, θ_{t+1} = θ_t − η·∇L_t(θ_t) with the same cycling mini-batches
    as :func:`~privlab.federated.client.client_update`, returning (θ₀ − θ_end)/η.
    """
    names = list(params)
    batch = obs.local_batch or len(x)
    if obs.local_steps == 1:
        rows = torch.arange(batch)
        loss = loss_fn(functional_call(model, params, (x[rows],)), rows)
        return list(torch.autograd.grad(loss, [params[n] for n in names], create_graph=True))
    assert obs.lr is not None  # enforced by GradientObservation
    current = dict(params)
    cursor = 0
    for _ in range(obs.local_steps):
        rows = torch.arange(cursor, cursor + batch) % len(x)
        cursor = (cursor + batch) % len(x)
        loss = loss_fn(functional_call(model, current, (x[rows],)), rows)
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=True)
        current = {n: current[n] - obs.lr * g for n, g in zip(names, grads, strict=True)}
    return [(params[n] - current[n]) / obs.lr for n in names]


def observed_tensors(model: nn.Module, obs: GradientObservation) -> list[torch.Tensor]:
    """The observation's tensors in ``model.named_parameters()`` order, detached, float32."""
    return [obs.gradients[n].detach().float() for n, _ in model.named_parameters()]


def random_images(
    batch: int,
    input_shape: tuple[int, ...],
    value_range: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Uniform noise in the value range: the attacks' starting point and a chance baseline.
    Drawn on the CPU (the seeded generator's device, so a seed gives the same start on every
    device), returned on the current default device."""
    lo, hi = value_range
    noise = torch.rand(batch, *input_shape, generator=generator, device="cpu")
    return (lo + (hi - lo) * noise).to(torch.get_default_device())


def on_device(obs: GradientObservation, device: torch.device) -> GradientObservation:
    """The observation with its tensors (and known labels) on ``device``."""
    moved = {n: g.detach().to(device) for n, g in obs.gradients.items()}
    labels = None if obs.labels is None else obs.labels.to(device)
    return dataclasses.replace(obs, gradients=moved, labels=labels)


# -------------------------------------------------------------------------------- base class

#: what an honest-but-curious federated server holds: the global model it sent (WEIGHTS) and
#: the clients' updates of it (PARAM_GRADIENTS)
SERVER_ACCESS = Access.PARAM_GRADIENTS | Access.WEIGHTS


def server_target(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    value_range: tuple[float, float] = (0.0, 1.0),
    name: str = "global model",
    access: Access = SERVER_ACCESS,
    device: str | torch.device = "cpu",
) -> Target:
    """The server's view of the global model ``model`` as a :class:`Target` granting
    ``access`` (default :data:`SERVER_ACCESS`), on ``device``. The target holds its own copy:
    the caller's model is neither moved, frozen nor switched to eval mode."""
    info = TargetInfo(
        name=name,
        num_classes=int(num_classes),
        input_shape=tuple(int(s) for s in input_shape),
        value_range=(float(value_range[0]), float(value_range[1])),
    )
    return Target(copy.deepcopy(model), info, access, device=device)


def _checked_info(info: TargetInfo) -> tuple[tuple[int, ...], int, tuple[float, float]]:
    """(input_shape, num_classes, value_range) of the target, refused when meaningless."""
    shape = tuple(int(s) for s in info.input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes, got {tuple(info.input_shape)}")
    if info.num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {info.num_classes}")
    lo, hi = (float(v) for v in info.value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {info.value_range}")
    return shape, int(info.num_classes), (lo, hi)


def _check_known_labels(obs: GradientObservation, num_classes: int) -> None:
    if obs.labels_known and obs.labels is not None:
        bad = [int(c) for c in obs.labels if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(f"known labels {bad} are outside 0..{num_classes - 1}")


@dataclasses.dataclass(kw_only=True)
class GradientInversionAttack:
    """Base class; subclasses are dataclasses whose fields are the attack's hyperparameters.

    Access: the client's update is what PARAM_GRADIENTS grants (it comes beside the target, as
    the :class:`~privlab.federated.observation.GradientObservation`); the optimisation attacks
    also simulate updates at their dummy inputs, which takes the global model's weights, so they
    require WEIGHTS too (the server sent those weights: it has them). An attack that reads
    nothing but the update and the architecture (:class:`~privlab.attacks.gradient_inversion.
    analytic_fc.AnalyticFC`) declares PARAM_GRADIENTS alone and gets a weightless model.
    """

    name: ClassVar[str] = "gradient_inversion_attack"
    family: ClassVar[str] = "gradient_inversion"
    requires: ClassVar[Access] = SERVER_ACCESS
    needs_reference: ClassVar[bool] = False
    needs_reference_models: ClassVar[bool] = False

    def invert(
        self,
        target: Target,
        obs: GradientObservation,
        *,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> GradientInversionResult:
        """Reconstruct the client's batch from ``obs``, its update of ``target``'s model.

        ``target`` must grant :attr:`requires` (else :class:`~privlab.threat_model.AccessDenied`
        names what is missing); the input shape, class count and value range are its
        ``info``'s. The observation is checked against the model first. The optimisation runs
        on ``device`` (default: the target's) on a copy of the model; random starts are drawn
        on the CPU from ``seed``, so CPU and CUDA runs start alike. The result's tensors are on
        the CPU."""
        target.require(self.requires, f"attack {self.name!r}")
        shape, num_classes, value_range = _checked_info(target.info)
        start = time.perf_counter()
        dev = torch.device(device) if device is not None else target.device
        model = self.model_of(target, dev)
        check_observation(model, obs)
        _check_known_labels(obs, num_classes)
        # factory calls inside the attack create their tensors on dev; the device context costs
        # a Python call per torch op (a quarter of a small model's step), so it is entered only
        # when dev is not already the default
        home = dev == torch.get_default_device()
        with contextlib.nullcontext() if home else dev:
            result = self._invert(model, on_device(obs, dev), shape, num_classes, value_range, seed)
        return dataclasses.replace(
            result,
            images=result.images.detach().cpu(),
            labels=result.labels.detach().cpu(),
            seconds=time.perf_counter() - start,
        )

    def model_of(self, target: Target, device: torch.device) -> nn.Module:
        """What the attack computes with: a copy of the weights on ``device`` when it requires
        WEIGHTS, else the weightless architecture."""
        if Access.WEIGHTS in self.requires:
            return target.module_for_simulation(device)
        return target.architecture()

    def _invert(
        self,
        model: nn.Module,
        obs: GradientObservation,
        input_shape: tuple[int, ...],
        num_classes: int,
        value_range: tuple[float, float],
        seed: int,
    ) -> GradientInversionResult:
        raise NotImplementedError

    def labels_for(
        self, model: nn.Module, obs: GradientObservation, recover: bool
    ) -> torch.Tensor | None:
        """Known labels, else iDLG's when ``recover``, else None (the attack learns them)."""
        if obs.labels_known:
            assert obs.labels is not None
            return obs.labels.detach().long().clone()
        return idlg_labels(obs, model) if recover else None

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
