"""The weak adversary (Maciazek & Allison): learn to map released head weights to training images.

It knows the architecture, the training recipe and the data prior, not the training set. It
trains many shadow heads on its own sets from the prior (Algorithm 1; the study generates them,
:mod:`privlab.studies.reconstruction.shadow_heads`, and hands them over as
:class:`~privlab.attacks.reconstruction.shadow_shards.ShadowHeads`), then a reconstructor
network from (normalised weights ⊕ class) to an image of that class in the head's training set,
with the soft-min loss of Eq. 3 and early stopping on validation shadows trained on a disjoint
part of the prior.

The attack is :class:`WeakAdversary` (``ATTACKS["weak_adversary"]``), its fields the
reconstructor's hyperparameters; it requires WEIGHTS: :meth:`WeakAdversary.reconstruct` reads a
released head through its :class:`~privlab.threat_model.Target`.

Success is a hypothesis test at τ against reconstructions from null weights:
:mod:`privlab.attacks.reconstruction.evaluation`. Shards are read one at a time: memory stays
bounded by the shard size.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks.reconstruction.reconstructor import (
    MLPReconstructor,
    ResidualGenerator,
    WeightNormaliser,
    adam,
    soft_min_loss,
    training_forward,
)
from privlab.attacks.reconstruction.shadow_shards import (
    ShadowHeads,
    Shard,
    head_weights,
    shard_weights,
)
from privlab.checkpoint import Checkpoint
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (θ, class, candidate images)


def fit_normaliser(heads: ShadowHeads, *, covariance: bool = False) -> WeightNormaliser:
    """The shadow weights' per-coordinate mean and std (and covariance), in one pass."""
    norm = WeightNormaliser(covariance=covariance)
    for shard in heads:
        norm.update(shard_weights(shard))
    return norm


#: rows per forward pass when reconstructing (benchmarks/bench_reconstructor_step.py)
EVAL_ROWS = 128


@dataclasses.dataclass
class Reconstructor:
    """A trained reconstructor with its weight normaliser and class count."""

    model: nn.Module
    normaliser: WeightNormaliser
    classes: int
    conditional: bool
    history: list[dict[str, float]]
    targets: list[int]  # the classes it reconstructs

    @torch.no_grad()
    def __call__(self, theta: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Reconstructions in eval mode, ``EVAL_ROWS`` rows at a time (the evaluation passes
        whole shards of 10,000 heads: in one call the residual generator's activations leave
        the cache and each image costs about twice as much on a CPU)."""
        self.model.eval()
        inputs = _inputs(self.normaliser(theta), classes, self.classes, self.conditional)
        return torch.cat([self.model(part) for part in inputs.split(EVAL_ROWS)])

    def inputs(self, theta: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The network's input for weights ``theta`` and ``classes`` (no evaluation)."""
        return _inputs(self.normaliser(theta), classes, self.classes, self.conditional)


def _inputs(
    theta: torch.Tensor, classes: torch.Tensor, count: int, conditional: bool
) -> torch.Tensor:
    if not conditional:
        return theta
    return torch.cat([theta, F.one_hot(classes, count).float()], dim=1)


def _fit_state(
    recon: Reconstructor,
    opt: torch.optim.Optimizer,
    best: float,
    best_state: dict[str, torch.Tensor],
    since: int,
    step: int,
) -> dict[str, Any]:
    """What a fit carries from one validation check to the next (its checkpoint)."""
    return {
        "model": recon.model.state_dict(),
        "optimizer": opt.state_dict(),
        "best_state": best_state,
        "history": recon.history,
        "best": best,
        "since": since,
        "step": step,
    }


def _resume(
    recon: Reconstructor, opt: torch.optim.Optimizer, saved: dict[str, Any] | None
) -> tuple[float, dict[str, torch.Tensor], int, int]:
    """Put a :func:`_fit_state` back; (best, best_state, since, step), those of a fresh fit
    where nothing was saved."""
    if saved is None:
        return float("inf"), copy.deepcopy(recon.model.state_dict()), 0, 0
    recon.model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    recon.history = list(saved["history"])
    return float(saved["best"]), saved["best_state"], int(saved["since"]), int(saved["step"])


def _batches(
    shard: Shard,
    images: torch.Tensor,
    targets: list[int],
    batch_size: int,
    gen: torch.Generator,
) -> Iterator[Batch]:
    """(θ, class, candidates) batches of one shard: the candidates are the head's training
    images it was taught as that class (one of ``targets``, drawn at random)."""
    theta, idx, trained_as = shard_weights(shard), shard["indices"].long(), shard["labels"].long()
    order = torch.randperm(len(theta), generator=gen)
    choices = torch.tensor(targets)
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        c = choices[torch.randint(0, len(choices), (len(rows),), generator=gen)]
        members = trained_as[rows] == c[:, None]
        per = int(members.sum(1).min())
        pick = members.float().argsort(dim=1, descending=True, stable=True)[:, :per]
        yield theta[rows], c, images[idx[rows].gather(1, pick)]


@ATTACKS.register("weak_adversary")
@dataclasses.dataclass(kw_only=True)
class WeakAdversary:
    """Weak adversary (Maciazek & Allison): a reconstructor from head weights to training images.

    Fields are the reconstructor's hyperparameters: ``kind`` (``"mlp"``, or the paper's
    ``"residual"`` generator), ``width`` (MLP width, or S of the residual generator: 256 for
    MNIST in the paper), ``blocks``, ``conditional`` (a one-hot class input), Adam's ``lr``,
    ``batch_size``, ``epochs`` (passes over the training shards), the soft-min ``alpha``, and
    early stopping: a validation check every ``eval_every`` steps, stop after ``patience``
    checks without improvement. ``precision="bfloat16"`` trains with mixed precision: the
    training steps' forward pass in bfloat16 (autocast), the weights, Adam, the loss and every
    evaluation in float32 (about 1.7× faster a step of the residual generator on a CPU with
    bfloat16 instructions; benchmarks/bench_reconstructor_step.py).
    """

    name: ClassVar[str] = "weak_adversary"
    family: ClassVar[str] = "reconstruction"
    requires: ClassVar[Access] = Access.WEIGHTS
    needs_reference: ClassVar[bool] = False
    needs_reference_models: ClassVar[bool] = False
    kind: Literal["residual", "mlp"] = "mlp"
    width: int = 512
    blocks: int = 2
    conditional: bool = True
    lr: float = 2e-4
    batch_size: int = 32
    epochs: int = 1
    alpha: float = 100.0
    eval_every: int = 500
    patience: int = 5
    # added after runs were stored: out of the repr, part of their state/ keys (the study
    # keys it only where it is not the default), so that those keys still hold
    precision: Literal["float32", "bfloat16"] = dataclasses.field(default="float32", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("residual", "mlp"):
            raise ValueError(f"unknown reconstructor kind {self.kind!r}; use 'residual' or 'mlp'")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"unknown precision {self.precision!r}; use 'float32' or 'bfloat16'")
        sizes = ("width", "blocks", "batch_size", "epochs", "eval_every", "patience")
        bad = [f for f in sizes if getattr(self, f) < 1]
        bad += [f for f in ("lr", "alpha") if not getattr(self, f) > 0]
        if bad:
            raise ValueError(f"bad {bad}: {', '.join(sizes)} must be ≥ 1, lr and alpha > 0")

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def fit(
        self,
        heads: ShadowHeads,
        val: ShadowHeads,
        images: torch.Tensor,
        val_images: torch.Tensor,
        *,
        seed: int = 0,
        normaliser: WeightNormaliser | None = None,
        checkpoint: Checkpoint | None = None,
        on_steps: Callable[[int], object] = lambda done: None,
    ) -> Reconstructor:
        """Train on ``heads`` (their pool ``images`` in [−1, 1]); early stopping on the soft-min
        loss of ``val`` (pool ``val_images``). Memory: one shard and the model.
        ``normaliser``: the shadows' statistics when the caller already has them (else one
        pass over the shards). ``checkpoint``: the state is saved there at every validation
        check, and a fit that finds one resumes from it (the batches before it are drawn again
        and skipped), with the same result as a fit never interrupted. ``on_steps(k)``: told
        of k more training steps done, at the start (those resumed) and at every check (for
        a progress bar of :meth:`steps` steps)."""
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        normaliser = normaliser or fit_normaliser(heads)
        net = self._network(normaliser, heads.classes, tuple(images.shape[1:]))
        targets = list(heads.target_classes)
        recon = Reconstructor(net, normaliser, heads.classes, self.conditional, [], targets)
        opt = adam(recon.model.parameters(), lr=self.lr)
        saved = checkpoint.load() if checkpoint is not None else None
        best, best_state, since, step = _resume(recon, opt, saved)
        batches = self._training_batches(heads, images, recon.targets, gen)
        for _ in range(step):  # the batches the checkpoint already trained on
            next(batches, None)
        on_steps(step)
        recon.model.train()
        for theta, c, cands in batches:
            loss = self._step(recon, opt, theta, c, cands)
            step += 1
            if step % self.eval_every:
                continue
            on_steps(self.eval_every)
            v = self._val_loss(recon, val, val_images, seed + 1)
            recon.history.append({"step": float(step), "train": loss.item(), "val": v})
            if v < best:
                best, best_state, since = v, copy.deepcopy(recon.model.state_dict()), 0
            else:
                since += 1
            if since >= self.patience:
                recon.model.load_state_dict(best_state)
                return recon
            if checkpoint is not None:
                checkpoint.save(_fit_state(recon, opt, best, best_state, since, step))
        v = self._val_loss(recon, val, val_images, seed + 1)
        recon.history.append({"step": float(step), "val": v})
        if v > best:
            recon.model.load_state_dict(best_state)
        return recon

    def _step(
        self,
        recon: Reconstructor,
        opt: torch.optim.Optimizer,
        theta: torch.Tensor,
        c: torch.Tensor,
        cands: torch.Tensor,
    ) -> torch.Tensor:
        """One training step (the forward pass in bfloat16 under mixed precision); its loss."""
        out = training_forward(recon.model, recon.inputs(theta, c), self.precision)
        loss = soft_min_loss(out, cands, alpha=self.alpha).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def steps(self, shard_sizes: Sequence[int]) -> int:
        """The training steps of a fit that does not stop early, on shards of these sizes."""
        return self.epochs * sum(-(-size // self.batch_size) for size in shard_sizes)

    def _network(
        self, normaliser: WeightNormaliser, classes: int, shape: tuple[int, ...]
    ) -> nn.Module:
        assert normaliser.mean is not None
        in_dim = int(normaliser.mean.numel()) + (classes if self.conditional else 0)
        if self.kind == "residual":
            return ResidualGenerator(in_dim, shape, width=self.width, blocks=self.blocks)  # type: ignore[arg-type]
        return MLPReconstructor(in_dim, shape, width=self.width)  # type: ignore[arg-type]

    def _training_batches(
        self, heads: ShadowHeads, images: torch.Tensor, targets: list[int], gen: torch.Generator
    ) -> Iterator[Batch]:
        """Every training batch, epoch after epoch, shard after shard (drawn lazily)."""
        for _ in range(self.epochs):
            for shard in heads:
                yield from _batches(shard, images, targets, self.batch_size, gen)

    def _val_loss(
        self, recon: Reconstructor, val: ShadowHeads, images: torch.Tensor, seed: int
    ) -> float:
        """Mean soft-min loss over every validation head (the same draws at every check)."""
        recon.model.eval()
        total, count = 0.0, 0
        vgen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for shard in val:
                for theta, c, cands in _batches(shard, images, recon.targets, 256, vgen):
                    out = recon.model(recon.inputs(theta, c))
                    total += float(soft_min_loss(out, cands, alpha=self.alpha).sum())
                    count += len(c)
        recon.model.train()
        return total / max(count, 1)

    def reconstruct(
        self, recon: Reconstructor, target: Target, classes: Sequence[int] | None = None
    ) -> torch.Tensor:
        """One image per class (default: the reconstructor's) from the released head behind
        ``target`` (its weights, laid out as the shadow heads'), in [−1, 1]."""
        target.require(self.requires, f"attack {self.name!r}")
        chosen = list(recon.targets if classes is None else classes)
        theta = head_weights(target.parameters()).cpu()
        return recon(theta.expand(len(chosen), -1), torch.tensor(chosen, dtype=torch.long))
