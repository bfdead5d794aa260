"""Generative model inversion, GMI (Zhang et al., CVPR 2020), on a privlab-trained prior.

Random latents from the prior, optimised for the target's cross-entropy of the attacked class
plus a prior term that keeps them likely under the generator's prior (GMI uses its GAN
discriminator; with a VAE prior the Gaussian log-density ½‖z‖² plays that role). No candidate
search and no augmentation; the most confident images of each class are kept.
"""

from __future__ import annotations

import dataclasses

from privlab.attacks.inversion.latent import LatentInversion
from privlab.registry import ATTACKS


@ATTACKS.register("gmi")
@dataclasses.dataclass(kw_only=True)
class GenerativeModelInversion(LatentInversion):
    """GMI: random prior latents, cross-entropy + Gaussian prior loss, most confident kept."""

    name = "gmi"
    search: int = 0
    candidates: int = 10
    steps: int = 150
    lr: float = 0.02
    loss: str = "ce"
    prior_weight: float = 0.01
    augment: bool = False
    selection_transforms: int = 0
