"""Plug-and-Play model inversion, PPA (Struppek et al., ICML 2022), on a privlab-trained prior.

Candidate search over prior samples by target confidence, latent optimisation with the Poincaré
loss under random crops, final selection by confidence over random crops. The paper searches
2,000 StyleGAN latents for 200 candidates per identity and keeps 50; at CPU scale the defaults
search 2,000 VAE latents for 20 candidates per class and keep 5 (SPEC §1.6).
"""

from __future__ import annotations

import dataclasses

from privlab.attacks.inversion.latent import LatentInversion
from privlab.registry import ATTACKS


@ATTACKS.register("ppa")
@dataclasses.dataclass(kw_only=True)
class PlugAndPlay(LatentInversion):
    """PPA: candidate search, Poincaré-loss latent optimisation with crops, final selection."""

    name = "ppa"
