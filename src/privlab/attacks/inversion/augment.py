"""Differentiable random input transforms for inversion attacks (no torchvision).

PPA optimises and selects images under random crops so that they carry features the target
recognises robustly, not adversarial noise. A random resized crop with aspect ratio 1 is an
affine zoom-and-shift; ``grid_sample`` keeps it differentiable in the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_resized_crop(
    x: torch.Tensor,
    *,
    scale: tuple[float, float] = (0.9, 1.0),
    flip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random square of area ∈ ``scale`` at a random place and resize it back.

    Only images (N×C×H×W) are transformed; other shapes pass through unchanged.
    """
    if x.dim() != 4:
        return x
    n = len(x)
    area = torch.empty(n).uniform_(*scale, generator=generator)
    side = area.sqrt()
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
    sign = torch.ones(n)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = side * sign
    theta[:, 1, 1] = side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
