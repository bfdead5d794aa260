"""Model ensembles: train K models of one architecture at once, each on its own subset.

Reference and shadow models (LiRA, RMIA, Shokri et al.) are many small models of one
architecture, model k trained on the examples of a pool selected by row k of a membership
mask. :func:`train_ensemble` trains them together: the K models' parameters are stacked
into one tensor per parameter (leading dimension K) and the forward pass is
``torch.func.functional_call`` under ``torch.func.vmap`` over (parameters, x_k), where x_k is
model k's own batch, gathered by index from the pool tensor (no per-example DataLoader).
Because the models are independent, the gradient of the *sum* of the K per-model mean
losses with respect to the stacked parameters is, slice by slice, each model's own gradient.

Semantics
---------
Model k is trained exactly as
``train(make_model(seeds[k]), data.subset(np.flatnonzero(masks[k])), regime, spec,
seed=seeds[k])`` would train it (:mod:`privlab.training.loop`), in distribution and, where
the random streams allow, step for step:

* **Batches.** Model k with n_k examples uses batch size b_k = min(batch_size, n_k) and
  ceil(n_k / b_k) steps per epoch, last partial batch kept. Its order is drawn from
  ``torch.Generator().manual_seed(seeds[k])`` with the same calls the DataLoader makes, so
  the batches are *identical* to the sequential run's. Models with fewer examples do fewer
  steps: batches are padded to the largest one with per-example weights 0, and an *active*
  mask freezes a model that takes no step at a step index (parameters, Adam moments,
  momentum buffer and Adam's step count all stay put).
* **Optimisers** are implemented functionally on the stacked tensors, update for update as
  ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient, bias correction with the
  model's own step count) and ``torch.optim.SGD`` (momentum buffer initialised with the first
  gradient, no dampening, no Nesterov). ``schedule="cosine"`` uses the learning rates that
  ``CosineAnnealingLR(T_max=epochs)`` produces, stepped once per epoch.
* **Losses**: mean cross-entropy over the model's batch (``natural``); smoothed targets
  (``label_smoothing``); ``pgd_at``: untargeted PGD with random start (L∞ or L2, step size
  2.5·ε/steps by default, clipped to ``regime.clip``) against the model's own parameters, on
  the first round(adv_ratio·b) examples of its batch, the adversarial loss computed in eval
  mode as in :class:`~privlab.training.regime.attack_mode`. Random starts come from
  ``torch.Generator().manual_seed(seeds[k])``, the stream the loop's ``torch.manual_seed``
  gives the global generator.
* **DP-SGD** as Opacus does it: Poisson sampling of each member with rate
  q_k = 1 / ceil(n_k / b_k) for ``int(1 / q_k)`` steps per epoch (drawn, like Opacus' sampler,
  from the seeded loader generator), per-sample gradients (``vmap(grad)`` nested in the model
  ``vmap``), each clipped to ``max_grad_norm`` C over all parameters (factor
  min(1, C / (‖g‖ + 1e-6))), summed, plus N(0, σ²C²) noise, divided by Opacus' expected batch
  size ``int(n_k · q_k)`` (:mod:`privlab.training.dp`). An empty Poisson batch is still a
  step, as in the loop: the update is the noise alone and the step is accounted (a step where
  every model of the chunk draws an empty batch runs on one padded example of weight 0). σ is
  ``noise_multiplier`` or, for ``target_epsilon``, :func:`privlab.training.dp
  .noise_multiplier_for` with the model's own q_k, δ_k (default 1/n_k^1.1), epochs and
  accountant. Each model's ``summary`` has the keys of ``DPSGD.summary()``, ε from an Opacus
  accountant of the same kind with history [(σ, q_k, steps_k)].

Model k's result depends only on ``seeds[k]`` and its mask, not on which models share its
chunk (up to floating-point rounding of the batched kernels). As in the loop, a non-finite
loss raises ``FloatingPointError`` (naming the model and its seed) and stops the whole call.

Cost
----
What vectorising saves is per-model overhead (Python, DataLoader collation, one optimiser
call per parameter tensor, kernel launches), not arithmetic: stacked ``Linear`` layers become
batched matmuls and stacked ``Conv2d`` layers one grouped convolution (its input laid out
channels-last, which oneDNN's grouped kernels run markedly faster). On a CPU those kernels
are roughly as efficient per model as the sequential ones, so the gain is largest for small
models (see ``benchmarks/bench_ensemble_training.py``); on an accelerator, where one small
model leaves the device mostly idle, it is much larger. On a CPU the models are split into
``workers`` groups (default: one per torch thread) trained concurrently, each with one torch
thread: two single-threaded small grouped convolutions beat one two-threaded one (5.6× over
sequential training for 64 small CNNs, against 3.7× with one group). DP-SGD holds the K×B
per-sample gradients of every parameter at once: ``chunk_size`` bounds that memory.

Fallback
--------
:func:`can_vectorise` names what cannot be vectorised: any regime other than the four above
(matched by exact type, so a subclass that overrides a hook is not mistaken for its parent),
``pgd_at`` with ``da_weight`` > 0, modules whose training-mode behaviour is stateful or random
(BatchNorm / InstanceNorm with running statistics, dropout), models Opacus refuses under
DP-SGD, or a functional forward/backward that fails under ``vmap``. Then
:func:`train_ensemble` warns (``RuntimeWarning`` "... falling back to sequential training:
<reason>") and calls :func:`~privlab.training.loop.train` once per model: slower, never
different semantics.
"""

from __future__ import annotations

import copy
import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from privlab.data.bundle import Split
from privlab.training.ensemble_batches import PoissonBatches, ShuffledBatches
from privlab.training.ensemble_dp import (
    GradientCanary,
    dp_noisy_gradients,
    dp_settings,
    dp_summary,
)
from privlab.training.loop import EpochCallback, TrainResult, TrainSpec, train
from privlab.training.perturbations import _flat_norm, project
from privlab.training.regime import Regime
from privlab.training.regimes.dp_sgd import DPSGD
from privlab.training.regimes.label_smoothing import LabelSmoothing
from privlab.training.regimes.natural import Natural
from privlab.training.regimes.pgd_at import PGDAdversarialTraining
from privlab.training.stacked_optimizer import StackedOptimizer, learning_rates

__all__ = ["can_vectorise", "dp_noisy_gradients", "train_ensemble"]

_VECTORISED_REGIMES = (Natural, LabelSmoothing, PGDAdversarialTraining, DPSGD)
_STATEFUL_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_RANDOM_MODULES = (nn.modules.dropout._DropoutNd,)
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults, which make_optimizer uses
ADAM_EPS = 1e-8

Params = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- public API


def can_vectorise(model: nn.Module, regime: Regime) -> str | None:
    """None when ``train_ensemble`` can train copies of ``model`` under ``regime`` as one
    vectorised ensemble with the loop's semantics; otherwise the reason why not."""
    if type(regime) not in _VECTORISED_REGIMES:
        names = ", ".join(sorted(r.name for r in _VECTORISED_REGIMES))
        return f"regime {regime.name!r} ({type(regime).__name__}) is not vectorised (only {names})"
    if isinstance(regime, PGDAdversarialTraining) and regime.da_weight > 0:
        return "pgd_at with da_weight > 0 (the DA regulariser is not vectorised)"
    if isinstance(regime, PGDAdversarialTraining) and regime.fixed_subset:
        return "pgd_at with a fixed adv-train subset (adv_subset: fixed, 0 < adv_ratio < 1)"
    for name, module in model.named_modules():
        if isinstance(module, _STATEFUL_MODULES) and (
            module.track_running_stats or isinstance(module, nn.modules.batchnorm._BatchNorm)
        ):
            return f"module {name or '<root>'} ({type(module).__name__}) has batch statistics"
        if isinstance(module, _RANDOM_MODULES) and module.p > 0:
            return f"module {name or '<root>'} ({type(module).__name__}) draws random masks"
    if not any(p.requires_grad for p in model.parameters()):
        return "the model has no trainable parameters"
    if isinstance(regime, DPSGD):
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            return "Opacus refuses the model: " + "; ".join(str(e) for e in errors)
    return None


def train_ensemble(
    make_model: Callable[[int], nn.Module],
    data: Split,
    masks: np.ndarray,
    regime: Regime,
    spec: TrainSpec,
    *,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    chunk_size: int | None = None,
    workers: int | None = None,
    on_epoch: EpochCallback | None = None,
    gradient_canary: GradientCanary | None = None,
) -> list[TrainResult]:
    """Train K models, model k on ``data[masks[k]]`` from ``make_model(seeds[k])`` (a fresh
    model, the same architecture for every seed), at most ``chunk_size`` at once. Returns one
    :class:`TrainResult` per model in mask order: a plain module in eval mode on ``device``,
    its history, its own summary (DP-SGD: its own ε, δ, σ, q, steps) and ``seconds``, its
    share of its chunk's time. ``on_epoch(epoch, epochs, loss)`` gets each chunk's mean epoch
    loss. On a CPU, ``workers`` groups (default: torch's thread count) train concurrently
    with one torch thread each (benchmarks/README.md); results do not depend on the split.
    Falls back to sequential :func:`~privlab.training.loop.train` with a ``RuntimeWarning``
    when the models cannot be stacked (:func:`can_vectorise`). ``gradient_canary``: a DP-SGD
    audit's canary, its gradient in place of one pool example's (vectorised DP-SGD only).
    """
    masks, seed_list = _validate(data, masks, spec, seeds, chunk_size)
    device = torch.device(device)
    first = make_model(seed_list[0])
    reason = why_sequential(first, regime, spec, data, device)
    _check_canary(gradient_canary, regime, reason)
    if reason is not None:
        warnings.warn(
            f"train_ensemble: cannot vectorise {type(first).__name__} under regime "
            f"{regime.name!r}, falling back to sequential training: {reason}",
            RuntimeWarning,
            stacklevel=2,
        )
        models = (first if k == 0 else make_model(seed) for k, seed in enumerate(seed_list))
        subsets = (data.subset(np.flatnonzero(mask)) for mask in masks)
        return [
            train(model, subset, regime, spec, seed=seed, device=device, on_epoch=on_epoch)
            for model, subset, seed in zip(models, subsets, seed_list, strict=True)
        ]
    # built here, in order: make_model seeds torch's global generator, which threads share
    all_models = [first] + [make_model(seed) for seed in seed_list[1:]]
    pool = (data.x.to(device), data.y.to(device))

    def train_group(lo: int, hi: int, report: EpochCallback | None) -> list[TrainResult]:
        size = chunk_size or (hi - lo)
        out: list[TrainResult] = []
        for start in range(lo, hi, size):
            stop = min(start + size, hi)
            members = [torch.from_numpy(np.flatnonzero(masks[k])) for k in range(start, stop)]
            out += _train_chunk(
                all_models[start:stop], *pool, members, regime, spec,
                seed_list[start:stop], device, report, gradient_canary,
            )  # fmt: skip
        return out

    return _in_groups(train_group, len(seed_list), device, workers, on_epoch)


def _check_canary(canary: GradientCanary | None, regime: Regime, reason: str | None) -> None:
    if canary is not None and (reason is not None or not isinstance(regime, DPSGD)):
        raise ValueError(
            "a gradient canary goes into vectorised DP-SGD training only"
            + (f" (these models train one by one: {reason})" if reason else "")
        )


def why_sequential(
    first: nn.Module, regime: Regime, spec: TrainSpec, data: Split, device: torch.device
) -> str | None:
    """Why the models cannot train as one stacked ensemble (None: they can)."""
    reason = can_vectorise(first, regime)
    if reason is None and spec.stop_at_accuracy is not None:
        reason = "early stopping at a validation accuracy is per model"
    return reason if reason is not None else _trial_vmap(first, data, device)


def _in_groups(
    train_group: Callable[[int, int, EpochCallback | None], list[TrainResult]],
    k_total: int,
    device: torch.device,
    workers: int | None,
    on_epoch: EpochCallback | None,
) -> list[TrainResult]:
    """On a CPU, groups of models trained concurrently in threads, one torch thread each."""
    n_workers = min(workers or torch.get_num_threads(), k_total) if device.type == "cpu" else 1
    if n_workers <= 1:
        return train_group(0, k_total, on_epoch)
    bounds = np.linspace(0, k_total, n_workers + 1).round().astype(int)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = [
                pool.submit(train_group, int(lo), int(hi), on_epoch if i == 0 else None)
                for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
            ]
            return [r for f in futures for r in f.result()]
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- validation


def _validate(
    data: Split,
    masks: np.ndarray,
    spec: TrainSpec,
    seeds: Sequence[int],
    chunk_size: int | None,
) -> tuple[np.ndarray, list[int]]:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        raise ValueError(f"masks must be a numpy bool array, got {type(masks).__name__}")
    if masks.dtype != np.bool_:
        raise ValueError(f"masks must have dtype bool, got {masks.dtype}")
    if masks.ndim != 2 or masks.shape[1] != len(data):
        raise ValueError(
            f"masks must have shape (K, len(data)) = (K, {len(data)}), got {masks.shape}"
        )
    if masks.shape[0] == 0:
        raise ValueError("masks has no rows: nothing to train")
    seed_list = [int(s) for s in seeds]
    if len(seed_list) != masks.shape[0]:
        raise ValueError(f"got {len(seed_list)} seeds for {masks.shape[0]} masks")
    empty = np.flatnonzero(~masks.any(axis=1))
    if len(empty):
        raise ValueError(f"mask rows {empty.tolist()[:10]} select no examples")
    if spec.epochs < 1 or spec.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got {spec.epochs}, {spec.batch_size}")
    if spec.optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {spec.optimizer!r}; use 'adam' or 'sgd'")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1 or None, got {chunk_size}")
    return masks, seed_list


def _trial_vmap(model: nn.Module, data: Split, device: torch.device) -> str | None:
    """Run one vmapped forward/backward on two stacked copies; the error as a reason."""
    try:
        base = copy.deepcopy(model).to(device)
        params = {
            n: torch.stack([p.detach()] * 2).requires_grad_(p.requires_grad)
            for n, p in base.named_parameters()
        }
        buffers = {n: torch.stack([b] * 2) for n, b in base.named_buffers()}
        x = data.x[:1].to(device).expand(2, 1, *data.x.shape[1:])

        def forward(p: Params, b: Params, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (xb,))

        out = vmap(forward)(params, buffers, x)
        trainable = [p for p in params.values() if p.requires_grad]
        torch.autograd.grad(out.float().sum(), trainable)
    except Exception as err:  # any failure means: train these models one by one
        return f"vmap of the functional model failed ({type(err).__name__}: {err})"
    return None


# --------------------------------------------------------------------------- training


def _example_loss(regime: Regime) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-example training loss over the last (class) dimension of the logits."""
    if isinstance(regime, LabelSmoothing):
        alpha = regime.alpha

        def smoothed(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            k = logits.shape[-1]
            target = F.one_hot(y, k).to(logits.dtype) * (1.0 - alpha) + alpha / k
            return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)

        return smoothed

    def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        flat = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
        )
        return flat.view(y.shape)

    return ce


class _Ensemble:
    """K stacked copies of one architecture and their vmapped functional forward."""

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        names = [n for n, _ in models[0].named_parameters()]
        shapes = [p.shape for _, p in models[0].named_parameters()]
        for m in models[1:]:
            if [n for n, _ in m.named_parameters()] != names or [
                p.shape for _, p in m.named_parameters()
            ] != shapes:
                raise ValueError("make_model must return the same architecture for every seed")
        self.base = copy.deepcopy(models[0]).to(device)
        grad_flags = {n: p.requires_grad for n, p in models[0].named_parameters()}

        def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack([t.detach() for t in tensors]).to(device)

        plist = [dict(m.named_parameters()) for m in models]
        blist = [dict(m.named_buffers()) for m in models]
        self.params = {
            n: stack([p[n] for p in plist]).requires_grad_() for n in names if grad_flags[n]
        }
        self.frozen = {n: stack([p[n] for p in plist]) for n in names if not grad_flags[n]}
        self.buffers = {n: stack([b[n] for b in blist]) for n in blist[0]}
        self._vmapped = vmap(self._forward)
        self._images_channels_last = any(isinstance(m, nn.Conv2d) for m in self.base.modules())

    def _forward(
        self, params: Params, frozen: Params, buffers: Params, x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(self.base, ({**params, **frozen}, buffers), (x,))

    def logits(self, x: torch.Tensor, *, params: Params | None = None) -> torch.Tensor:
        """K×B×C logits of model k on x[k] (K×B×…)."""
        p = self.params if params is None else params
        if self._images_channels_last and x.dim() == 5:
            # vmap runs a stacked Conv2d as one convolution with K groups on the input
            # viewed as B×(K·C)×H×W; laid out channels-last (physically B×H×W×K×C) that
            # view is free and oneDNN's grouped kernels are markedly faster (same values).
            x = x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)
        return self._vmapped(p, self.frozen, self.buffers, x)

    def export(self, models: list[nn.Module], device: torch.device) -> list[nn.Module]:
        """Load slice k of the stacked tensors into ``models[k]`` (plain modules, eval mode)."""
        with torch.no_grad():
            for k, model in enumerate(models):
                model.to(device)
                for n, p in model.named_parameters():
                    p.copy_(self.params[n][k] if n in self.params else self.frozen[n][k])
                for n, b in model.named_buffers():
                    b.copy_(self.buffers[n][k])
        return [m.eval() for m in models]


def _pgd_batch(
    ens: _Ensemble,
    regime: PGDAdversarialTraining,
    x: torch.Tensor,
    y: torch.Tensor,
    n_adv: list[int],
    gens: list[torch.Generator],
) -> torch.Tensor:
    """x with the first ``n_adv[k]`` examples of x[k] replaced by PGD examples against k."""
    eps, steps, norm = regime.eps, regime.steps, regime.norm
    if eps == 0 or steps == 0 or max(n_adv) == 0:
        return x
    alpha = regime.step_size if regime.step_size is not None else 2.5 * eps / steps
    lo, hi = regime.clip
    k_count, b = x.shape[:2]
    delta = torch.zeros_like(x)
    for k, (gen, n) in enumerate(zip(gens, n_adv, strict=True)):  # perturbations.random_start
        if n == 0:
            continue
        shape = (n, *x.shape[2:])
        if norm == "linf":
            delta[k, :n] = torch.empty(shape, device=x.device).uniform_(-eps, eps, generator=gen)
        else:
            direction = torch.randn(shape, device=x.device, generator=gen)
            radius = torch.rand(n, *([1] * (len(shape) - 1)), device=x.device, generator=gen)
            delta[k, :n] = direction / _flat_norm(direction) * (radius * eps)
    params = {n: p.detach() for n, p in ens.params.items()}
    flat_x = x.flatten(0, 1)
    x_adv = (flat_x + delta.flatten(0, 1)).clamp(lo, hi)
    was_training = ens.base.training
    ens.base.eval()  # attack_mode
    try:
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = ens.logits(x_adv.view_as(x), params=params)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                step = grad.sign() if norm == "linf" else grad / _flat_norm(grad)
                x_adv = (flat_x + project(x_adv + alpha * step - flat_x, eps, norm)).clamp(lo, hi)
    finally:
        ens.base.train(was_training)
    adv = (
        torch.arange(b, device=x.device).view(1, -1) < torch.tensor(n_adv, device=x.device)[:, None]
    )
    adv = adv.view(k_count, b, *([1] * (x.dim() - 2)))
    return torch.where(adv, x_adv.detach().view_as(x), x)


def _train_chunk(
    models: list[nn.Module],
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    members: list[torch.Tensor],
    regime: Regime,
    spec: TrainSpec,
    seeds: list[int],
    device: torch.device,
    on_epoch: EpochCallback | None,
    canary: GradientCanary | None = None,
) -> list[TrainResult]:
    k_count = len(models)
    ens = _Ensemble(models, device)
    ens.base.train()
    opt = StackedOptimizer(ens.params, spec, k_count)
    example_loss = _example_loss(regime)
    # the stream the loop's torch.manual_seed(seed) gives the global generator
    noise_gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    dp = regime if isinstance(regime, DPSGD) else None
    pgd = regime if isinstance(regime, PGDAdversarialTraining) else None
    shuffled: ShuffledBatches | None = None
    poisson: PoissonBatches | None = None
    if dp is not None:
        poisson = PoissonBatches(members, spec.batch_size, seeds)
        settings = dp_settings(dp, poisson, spec.epochs)
        noise_stds = [s["sigma"] * dp.max_grad_norm for s in settings]
        expected = poisson.expected_batch_size.to(device)
        per_sample = _per_sample_grads(ens, example_loss)
    else:
        shuffled = ShuffledBatches(members, spec.batch_size, seeds)
    dp_steps = torch.zeros(k_count, dtype=torch.long, device=device)
    histories: list[list[dict[str, float]]] = [[] for _ in range(k_count)]
    trainable = list(ens.params.values())
    start = time.perf_counter()
    for epoch, lr in enumerate(learning_rates(spec)):
        total = torch.zeros(k_count, device=device, dtype=torch.float64)
        count = torch.zeros(k_count, device=device, dtype=torch.float64)
        if shuffled is not None:
            idx_all, valid_all = shuffled.epoch()
            idx_all, valid_all = idx_all.to(device), valid_all.to(device)
            steps = [
                (idx_all[:, s], valid_all[:, s], valid_all[:, s].any(dim=1))
                for s in range(idx_all.shape[1])
            ]
        else:
            assert poisson is not None
            steps = [(i.to(device), v.to(device), a.to(device)) for i, v, a in poisson.epoch()]
        for idx, valid, active in steps:
            weight = valid.to(pool_x.dtype)
            n_batch = weight.sum(dim=1)
            xb, yb = pool_x[idx], pool_y[idx]
            if dp is not None:
                grads_ps, losses_ps = per_sample(ens.params, xb, yb)
                if canary is not None:
                    grads_ps = canary.insert(grads_ps, idx, valid)
                gens = [g if a else None for g, a in zip(noise_gens, active.tolist(), strict=True)]
                grads = dp_noisy_gradients(
                    grads_ps,
                    weight,
                    max_grad_norm=dp.max_grad_norm,
                    expected_batch_size=expected,
                    noise_std=noise_stds,
                    generators=gens,
                )
                losses = (losses_ps.detach() * weight).sum(dim=1) / n_batch.clamp(min=1)
                dp_steps += active.long()
            else:
                if pgd is not None:
                    n_adv = [round(pgd.adv_ratio * int(c)) for c in n_batch.tolist()]
                    xb = _pgd_batch(ens, pgd, xb, yb, n_adv, noise_gens)
                per_example = example_loss(ens.logits(xb), yb)
                losses = (per_example * weight).sum(dim=1) / n_batch.clamp(min=1)
                grads = dict(
                    zip(ens.params, torch.autograd.grad(losses.sum(), trainable), strict=True)
                )
                losses = losses.detach()
            bad = active & ~torch.isfinite(losses)
            if bool(bad.any()):
                k = int(bad.nonzero()[0])
                raise FloatingPointError(
                    f"non-finite loss {float(losses[k])} at epoch {epoch} for ensemble model "
                    f"{k} (seed {seeds[k]}) under regime {regime.name!r}; "
                    "lower the learning rate or check the data"
                )
            opt.step(ens.params, grads, active, lr)
            total += (losses * n_batch).double()
            count += n_batch.double()
        means = (total / count.clamp(min=1)).tolist()
        for k in range(k_count):
            histories[k].append({"epoch": float(epoch), "loss": means[k]})
        if on_epoch is not None:
            on_epoch(epoch + 1, spec.epochs, float(np.mean(means)))
    seconds = (time.perf_counter() - start) / k_count
    trained = ens.export(models, device)
    summaries: list[dict[str, Any]]
    if dp is not None:
        steps_done = dp_steps.tolist()
        summaries = [dp_summary(dp, settings[k], steps_done[k]) for k in range(k_count)]
    else:
        summaries = [regime.summary() for _ in range(k_count)]
    return [
        TrainResult(model=m, seconds=seconds, history=h, summary=s)
        for m, h, s in zip(trained, histories, summaries, strict=True)
    ]


def _per_sample_grads(
    ens: _Ensemble, example_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Callable[[Params, torch.Tensor, torch.Tensor], tuple[Params, torch.Tensor]]:
    """(params K×…, x K×B×…, y K×B) → (per-sample gradients K×B×…, per-sample losses K×B)."""

    def sample_loss(
        params: Params, frozen: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(ens.base, ({**params, **frozen}, buffers), (x.unsqueeze(0),))
        return example_loss(logits, y.unsqueeze(0)).squeeze(0)

    inner = vmap(grad_and_value(sample_loss), in_dims=(None, None, None, 0, 0))
    outer = vmap(inner, in_dims=(0, 0, 0, 0, 0))

    def run(params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[Params, torch.Tensor]:
        detached = {n: p.detach() for n, p in params.items()}
        grads, losses = outer(detached, ens.frozen, ens.buffers, x, y)
        return grads, losses

    return run
