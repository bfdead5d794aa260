"""Latent-space inversion through a generative prior: the engine of the GMI and PPA attacks.

1. **Candidate search** (PPA): decode ``search`` latents drawn from the prior, score each with
   the target's confidence in every attacked class, keep the ``candidates`` best per class.
   Without a search (GMI) the starting latents are fresh prior draws.
2. **Latent optimisation**: Adam on the latents (betas 0.1, 0.1) minimising an identity loss
   (Poincaré for PPA, cross-entropy for GMI) of randomly cropped decoded images, plus an
   optional Gaussian prior penalty ½‖z‖² (GMI's "prior loss"); the learning rate drops ×0.1 at
   60% and 80% of the steps (PPA's MultiStepLR).
3. **Final selection** (PPA): rank each class's optimised images by the target's mean
   confidence over ``selection_transforms`` random crops and keep ``per_class``.

Everything random comes from one generator seeded by the attack's seed.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from privlab.attacks.inversion.augment import random_resized_crop
from privlab.attacks.inversion.base import InversionAttack, Reconstruction, top_per_class
from privlab.attacks.inversion.losses import identity_loss
from privlab.models.vae import VAE
from privlab.threat_model import Target


@dataclasses.dataclass(kw_only=True)
class LatentInversion(InversionAttack):
    needs_prior = True
    search: int = 2000  # latents scored in the candidate search (0: no search)
    candidates: int = 20  # optimised latents per class
    steps: int = 100
    lr: float = 0.05
    loss: str = "poincare"
    prior_weight: float = 0.0  # weight of ½‖z‖², GMI's prior term
    truncation: float = 1.0  # ψ: prior draws are ψ·N(0, I)
    crop_scale: tuple[float, float] = (0.9, 1.0)  # random crops while optimising and selecting
    augment: bool = True
    selection_transforms: int = 100  # 0: rank by the confidence on the plain image
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.steps < 0 or self.search < 0:
            raise ValueError("candidates must be ≥ 1 and steps, search ≥ 0")
        if self.search and self.search < self.candidates:
            raise ValueError(f"search={self.search} must be ≥ candidates={self.candidates}")
        if self.per_class > self.candidates:
            raise ValueError(f"per_class={self.per_class} exceeds candidates={self.candidates}")
        identity_loss(self.loss, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))

    def _view(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_resized_crop(x, scale=self.crop_scale, generator=gen) if self.augment else x

    def _probs(self, target: Target, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [
                    target.differentiable_logits(self._view(xb, gen)).softmax(1).cpu()
                    for xb in x.split(self.batch_size)
                ]
            )

    def _start(
        self, target: Target, classes: list[int], prior: VAE, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.tensor(classes).repeat_interleave(self.candidates)
        if not self.search:
            return prior.sample_latents(
                len(labels), generator=gen, truncation=self.truncation
            ), labels
        z = prior.sample_latents(self.search, generator=gen, truncation=self.truncation)
        with torch.no_grad():
            probs = self._probs(
                target, torch.cat([prior.decode(zb) for zb in z.split(self.batch_size)]), gen
            )
        best = probs[:, classes].topk(self.candidates, dim=0).indices  # search × classes
        return z[best.T.reshape(-1).to(z.device)], labels

    def _optimise(
        self,
        target: Target,
        z: torch.Tensor,
        labels: torch.Tensor,
        prior: VAE,
        gen: torch.Generator,
    ) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr, betas=(0.1, 0.1))
        milestones = sorted({int(0.6 * self.steps), int(0.8 * self.steps)})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        y = labels.to(z.device)
        for _ in range(self.steps):
            logits = target.differentiable_logits(self._view(prior.decode(z), gen))
            loss = identity_loss(self.loss, logits, y).mean()
            if self.prior_weight:
                loss = loss + self.prior_weight * 0.5 * z.pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        return z.detach()

    def _invert(
        self, target: Target, classes: list[int], prior: VAE | None, seed: int
    ) -> Reconstruction:
        assert prior is not None
        start = time.perf_counter()
        prior = prior.to(target.device).eval()
        for p in prior.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        z, labels = self._start(target, classes, prior, gen)
        z = self._optimise(target, z, labels, prior, gen)
        with torch.no_grad():
            images = torch.cat([prior.decode(zb) for zb in z.split(self.batch_size)]).cpu()
        plain = self._probs_plain(target, images, labels)
        if self.selection_transforms and self.augment:
            score = torch.stack(
                [
                    self._probs(target, images, gen).gather(1, labels[:, None])[:, 0]
                    for _ in range(self.selection_transforms)
                ]
            ).mean(0)
        else:
            score = plain
        keep = top_per_class(labels, score, self.per_class)
        return Reconstruction(
            images[keep], labels[keep], plain[keep], seconds=time.perf_counter() - start
        )

    def _probs_plain(
        self, target: Target, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.cat(
                [
                    target.differentiable_logits(xb).softmax(1).cpu()
                    for xb in images.split(self.batch_size)
                ]
            )
        return probs.gather(1, labels[:, None])[:, 0]
