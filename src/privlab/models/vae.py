"""A small VAE: the public generative prior of the model-inversion attacks (SPEC §1.6).

The paper's attacks search the latent space of a StyleGAN2 trained on public faces; at CPU
scale a variational autoencoder (Kingma & Welling 2014) trained on public images stands in for
it. The encoder is only needed for training; attacks use ``decode`` and the N(0, I) prior.
Images come out in the data's value range through a sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class VAE(nn.Module):
    """Fully connected VAE: input → hidden → (μ, log σ²) ∈ R^z → hidden → image."""

    def __init__(
        self,
        input_shape: Sequence[int],
        *,
        latent: int = 8,
        hidden: int = 400,
        value_range: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if latent < 1 or hidden < 1:
            raise ValueError(f"latent and hidden must be ≥ 1, got {latent}, {hidden}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent = int(latent)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initialisation is fixed by the seed, not global state
            self._build(math.prod(self.input_shape), latent, hidden)

    def _build(self, d: int, latent: int, hidden: int) -> None:
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU())
        self.to_stats = nn.Linear(hidden, 2 * latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, d),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(self._unit(x))).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(len(z), *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes → images in the value range (differentiable in ``z``)."""
        lo, hi = self.value_range
        return lo + (hi - lo) * torch.sigmoid(self.decode_logits(z))

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        return (x - lo) / (hi - lo)

    def loss(self, x: torch.Tensor, *, beta: float = 1.0) -> torch.Tensor:
        """Negative ELBO per example: Bernoulli reconstruction + β·KL(q(z|x) ‖ N(0, I))."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy_with_logits(
            self.decode_logits(z), self._unit(x).clamp(0, 1), reduction="sum"
        )
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
        return (recon + beta * kl) / len(x)

    def sample_latents(
        self, n: int, *, generator: torch.Generator, truncation: float = 1.0
    ) -> torch.Tensor:
        """z ~ N(0, ψ²I): ψ < 1 trades diversity for typical images (StyleGAN's truncation)."""
        device = next(self.parameters()).device
        return truncation * torch.randn(n, self.latent, generator=generator).to(device)


def train_vae(
    vae: VAE,
    x: torch.Tensor,
    *,
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[float]:
    """Fit the VAE on public images; returns the mean loss per epoch."""
    if len(x) < 2:
        raise ValueError("the prior needs at least two public images")
    torch.manual_seed(seed)
    vae.to(device).train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    x = x.to(device)
    history = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = vae.loss(x[idx.to(device)], beta=beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    vae.eval()
    return history
