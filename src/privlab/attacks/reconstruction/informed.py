"""The informed adversary of Balle, Cherubin & Hayes (S&P 2022) against a small neural network.

The adversary knows every training point but one (D₋), the training algorithm and its
hyperparameters, and, in the strongest variant, the initialisation. It trains shadow models
θ_z = A(D₋ ∪ {z}) for many candidate targets z from its prior, then a reconstructor network
(RecoNN) from θ_z to z with a mean squared error. At attack time it feeds the released weights.

Success: the MSE to the true target, and the nearest-neighbour oracle of the paper — the
reconstruction is closer to the target than to any other point of the prior's pool.

Shadow models are the MLP heads of :mod:`privlab.training.heads` (FC → ReLU → FC on the
flattened image, full-batch gradient descent), trained ``chunk`` at a time on D₋ plus each
model's own target, with one shared initialisation (``known_init``) or one per model.

The attack is :class:`RecoNNAttack` (``ATTACKS["reconnn"]``), its fields RecoNN's training
hyperparameters; it requires WEIGHTS: :meth:`RecoNNAttack.reconstruct` reads a released model
through its :class:`~privlab.threat_model.Target`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from privlab.attacks.reconstruction.reconstructor import (
    MLPReconstructor,
    WeightNormaliser,
    adam,
)
from privlab.data.bundle import Split
from privlab.metrics.reconstruction import pairwise_mse
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target
from privlab.training.heads import (
    HeadDP,
    HeadSpec,
    flatten_heads,
    init_heads,
    train_heads,
    train_heads_dp,
)


def informed_shadows(
    spec: HeadSpec,
    fixed: Split,
    targets: Split,
    *,
    known_init: bool,
    init_seed: int = 0,
    seed: int = 0,
    chunk: int = 128,
    dp: HeadDP | None = None,
) -> torch.Tensor:
    """K × D_Θ flattened weights, model k trained on D₋ ∪ {targets[k]}.

    ``known_init``: every model starts from the one initialisation drawn from ``init_seed`` (the
    released model's, known to the adversary); otherwise each draws its own from ``seed``.
    ``dp``: train with DP-SGD instead, the mitigation of the paper."""
    gen = torch.Generator().manual_seed(seed)
    x_fixed, y_fixed = fixed.x.flatten(1), fixed.y
    features = x_fixed.shape[1]
    shared = (
        init_heads(spec, 1, features, generator=torch.Generator().manual_seed(init_seed))
        if known_init
        else None
    )
    out = []
    for lo in range(0, len(targets), chunk):
        z = targets.subset(torch.arange(lo, min(lo + chunk, len(targets))))
        k = len(z)
        x = torch.cat([x_fixed.expand(k, -1, -1), z.x.flatten(1)[:, None]], dim=1)
        y = torch.cat([y_fixed.expand(k, -1), z.y[:, None]], dim=1)
        params = (
            {name: v.expand(k, *v.shape[1:]).clone() for name, v in shared.items()}
            if shared is not None
            else init_heads(spec, k, features, generator=gen)
        )
        trained = (
            train_heads(spec, params, x, y, chunk=chunk)
            if dp is None
            else train_heads_dp(spec, dp, params, x, y, generator=gen)
        )
        out.append(flatten_heads(trained))
    return torch.cat(out)


@dataclasses.dataclass
class RecoNN:
    """θ → target image, with the shadow weights' normaliser."""

    model: MLPReconstructor
    normaliser: WeightNormaliser

    @torch.no_grad()
    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(self.normaliser(theta))


def train_reconnn(
    theta: torch.Tensor,
    targets: torch.Tensor,
    *,
    width: int = 512,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> RecoNN:
    """Fit the reconstructor on (shadow weights, their targets in [−1, 1]) with the MSE."""
    torch.manual_seed(seed)
    normaliser = WeightNormaliser()
    normaliser.update(theta)
    inputs = normaliser(theta)
    model = MLPReconstructor(inputs.shape[1], tuple(targets.shape[1:]), width=width)  # type: ignore[arg-type]
    opt = adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(inputs), generator=gen).split(batch_size):
            loss = F.mse_loss(model(inputs[rows]), targets[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return RecoNN(model, normaliser)


@ATTACKS.register("reconnn")
@dataclasses.dataclass(kw_only=True)
class RecoNNAttack:
    """Informed adversary (Balle et al.): RecoNN, from a released model's weights to the one
    training point the adversary does not know, learnt on shadow models trained on D₋ ∪ {z}.

    Fields: the reconstructor's ``width`` and its training (``epochs``, Adam's ``lr``,
    ``batch_size``)."""

    name: ClassVar[str] = "reconnn"
    family: ClassVar[str] = "reconstruction"
    requires: ClassVar[Access] = Access.WEIGHTS
    needs_reference: ClassVar[bool] = False
    needs_reference_models: ClassVar[bool] = False
    width: int = 512
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def fit(self, theta: torch.Tensor, targets: torch.Tensor, *, seed: int = 0) -> RecoNN:
        """RecoNN trained on shadow weights ``theta`` (K × D_Θ, :func:`informed_shadows`) and
        their unknown points ``targets`` (in [−1, 1])."""
        return train_reconnn(theta, targets, seed=seed, **self.params())

    def reconstruct(self, reconnn: RecoNN, target: Target) -> torch.Tensor:
        """The unknown training point of the released model behind ``target`` (1 × image)."""
        target.require(self.requires, f"attack {self.name!r}")
        params = target.parameters()
        return reconnn(flatten_heads({k: v[None].cpu() for k, v in params.items()}))


def nn_oracle(
    recon: torch.Tensor, truth: torch.Tensor, pool: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per reconstruction: its MSE to the true target, and whether it is closer to it than to
    every other image of ``pool`` (Balle et al.'s nearest-neighbour oracle names the target)."""
    mse_truth = (recon - truth).pow(2).flatten(1).mean(1)
    closest_other = pairwise_mse(recon, pool)
    same = pairwise_mse(truth, pool) < 1e-12  # the target itself may sit in the pool
    closest_other = closest_other.masked_fill(same, float("inf")).min(1).values
    return mse_truth, mse_truth.double() < closest_other


def informed_success(
    recon: torch.Tensor, truth: torch.Tensor, pool: torch.Tensor
) -> dict[str, float]:
    """Mean MSE to the true targets and the nearest-neighbour-oracle success rate: the share of
    reconstructions closer to their own target than to every other image of ``pool``."""
    mse_truth, hits = nn_oracle(recon, truth, pool)
    return {"mse": float(mse_truth.mean()), "nn_oracle_success": float(hits.double().mean())}
