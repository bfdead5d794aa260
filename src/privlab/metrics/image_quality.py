"""Image reconstruction quality: PSNR, RMSE, SSIM, and batch matching for gradient inversion.

All metrics are per image and take batches N × C × H × W (a single C × H × W image is a batch
of one), returning a float64 array of length N.

- RMSE = √(mean (a − b)²).
- PSNR = 10·log₁₀(R² / MSE) with R the data range (max − min possible value); +∞ for equal
  images.
- SSIM (Wang et al. 2004): with Gaussian-weighted local means μ, variances σ² and covariance
  σ_ab (window 11 × 11, σ = 1.5, weights normalised to sum 1),

      SSIM = (2 μ_a μ_b + C₁)(2 σ_ab + C₂) / ((μ_a² + μ_b² + C₁)(σ_a² + σ_b² + C₂)),

  C₁ = (0.01 R)², C₂ = (0.03 R)², averaged over every window position fully inside the image
  ("valid" positions, no padding) and over channels. Images smaller than the window (e.g. 8 × 8
  digits) use the largest odd window that fits, with the same σ.

A gradient-inversion attack returns its batch in an arbitrary order, so
:func:`match_reconstructions` pairs reconstructions with true images by the one-to-one
assignment of least total MSE (Hungarian algorithm) before scoring them.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _batch(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    ta = torch.as_tensor(a).detach().double().cpu()
    tb = torch.as_tensor(b).detach().double().cpu()
    if ta.shape != tb.shape:
        raise ValueError(
            f"images must have the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}"
        )
    if ta.dim() == 3:
        ta, tb = ta[None], tb[None]
    if ta.dim() != 4:
        raise ValueError(
            f"expected N × C × H × W (or C × H × W) images, got shape {tuple(ta.shape)}"
        )
    return ta, tb


def mse(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image mean squared error."""
    ta, tb = _batch(a, b)
    return (ta - tb).pow(2).flatten(1).mean(1).numpy()


def rmse(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image root mean squared error."""
    return np.sqrt(mse(a, b))


def psnr(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, data_range: float = 1.0
) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB, 10·log₁₀(R²/MSE) (+∞ when equal)."""
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    err = mse(a, b)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / err)


def gaussian_window(size: int, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """1-D Gaussian weights of odd length ``size``, normalised to sum 1 (float64)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be odd and ≥ 1, got {size}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(r**2) / (2 * sigma**2))
    return w / w.sum()


def ssim_window_size(height: int, width: int, window: int = SSIM_WINDOW) -> int:
    """The window used for an H × W image: ``window``, or the largest odd size that fits."""
    size = min(window, height, width)
    return size if size % 2 == 1 else size - 1


def ssim(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    data_range: float = 1.0,
    *,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> np.ndarray:
    """Per-image Gaussian-window SSIM (mean over valid window positions and channels)."""
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    ta, tb = _batch(a, b)
    _, c, h, w = ta.shape
    size = ssim_window_size(h, w, window)
    g = gaussian_window(size, sigma)
    kh = g.reshape(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = g.reshape(1, 1, 1, size).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable, valid, per channel
        return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)

    mu_a, mu_b = blur(ta), blur(tb)
    var_a = blur(ta * ta) - mu_a**2
    var_b = blur(tb * tb) - mu_b**2
    cov = blur(ta * tb) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(1).numpy()


@dataclasses.dataclass(frozen=True)
class MatchedReconstruction:
    """Reconstructions paired one-to-one with true images, and the pairs' quality.

    ``truth_index[k]`` is matched with ``recon_index[k]`` (sorted by truth index); with as many
    reconstructions as true images, ``permutation = recon_index`` puts the reconstructions in
    the true batch's order. Unmatched images (unequal counts) are not scored.
    """

    truth_index: np.ndarray
    recon_index: np.ndarray
    psnr: np.ndarray
    rmse: np.ndarray
    ssim: np.ndarray
    label_accuracy: float | None = None  # matched pairs whose labels agree
    label_set_accuracy: float | None = None  # labels recovered as a multiset, order-free

    @property
    def permutation(self) -> np.ndarray:
        return self.recon_index

    def summary(self) -> dict[str, Any]:
        """Means over the matched pairs (PSNR averaged in dB, as the literature does)."""
        return {
            "psnr": float(np.mean(self.psnr)),
            "rmse": float(np.mean(self.rmse)),
            "ssim": float(np.mean(self.ssim)),
            "label_accuracy": self.label_accuracy,
            "label_set_accuracy": self.label_set_accuracy,
            "pairs": len(self.truth_index),
        }


def match_reconstructions(
    recon: torch.Tensor,
    truth: torch.Tensor,
    *,
    data_range: float = 1.0,
    recon_labels: torch.Tensor | None = None,
    true_labels: torch.Tensor | None = None,
) -> MatchedReconstruction:
    """Optimal one-to-one pairing by pairwise MSE, then PSNR/RMSE/SSIM per pair.

    With both label vectors, ``label_accuracy`` is the fraction of matched pairs whose labels
    agree (it depends on the image pairing), and ``label_set_accuracy`` the size of the multiset
    intersection of the two label vectors over the number of true labels (iDLG's criterion: the
    labels found, whatever image they go with).
    """
    if recon.dim() != 4 or truth.dim() != 4 or recon.shape[1:] != truth.shape[1:]:
        raise ValueError(
            f"need N × C × H × W batches of one image shape, got {tuple(recon.shape)} and "
            f"{tuple(truth.shape)}"
        )
    if len(recon) == 0 or len(truth) == 0:
        raise ValueError("need at least one reconstruction and one true image")
    r = recon.detach().double().cpu().flatten(1)
    t = truth.detach().double().cpu().flatten(1)
    cost = (torch.cdist(t, r).pow(2) / t.shape[1]).numpy()  # truth × recon MSE
    rows, cols = linear_sum_assignment(cost)
    r_img, t_img = recon[cols], truth[rows]
    accuracy = set_accuracy = None
    if recon_labels is not None and true_labels is not None:
        if len(recon_labels) != len(recon) or len(true_labels) != len(truth):
            raise ValueError("need one label per reconstruction and one per true image")
        hits = recon_labels.cpu()[cols] == true_labels.cpu()[rows]
        accuracy = float(hits.double().mean())
        found = Counter(recon_labels.tolist()) & Counter(true_labels.tolist())
        set_accuracy = sum(found.values()) / len(true_labels)
    return MatchedReconstruction(
        truth_index=np.asarray(rows),
        recon_index=np.asarray(cols),
        psnr=psnr(r_img, t_img, data_range),
        rmse=rmse(r_img, t_img),
        ssim=ssim(r_img, t_img, data_range),
        label_accuracy=accuracy,
        label_set_accuracy=set_accuracy,
    )


def psnr_of_mse(value: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a given MSE."""
    return math.inf if value == 0 else 10 * math.log10(data_range**2 / value)


def identification_rate(
    matched: MatchedReconstruction,
    recon: torch.Tensor,
    truth_rows: Sequence[int],
    pool: torch.Tensor,
) -> float:
    """Fraction of matched reconstructions whose nearest image of ``pool`` (flattened rows,
    pixel distance) is the true image they were matched with, ``truth_rows[k]`` being the pool
    row of true image k: the reconstruction identifies its source among all candidates."""
    r = recon.detach().to(pool.dtype).cpu().flatten(1)
    nearest = torch.cdist(r, pool).argmin(1)
    hits = [
        int(nearest[int(ri)]) == int(truth_rows[int(ti)])
        for ti, ri in zip(matched.truth_index, matched.recon_index, strict=True)
    ]
    return float(np.mean(hits))
