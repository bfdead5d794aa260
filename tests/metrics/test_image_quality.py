"""PSNR, RMSE, SSIM (checked against an independent scipy computation) and batch matching."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from privlab.metrics.image_quality import (
    match_reconstructions,
    psnr,
    psnr_of_mse,
    rmse,
    ssim,
    ssim_window_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Wang et al.'s SSIM with scipy's Gaussian filter: σ = 1.5, the filter truncated to the
    window's radius, then only positions whose window lies inside the image are kept."""
    c, h, w = a.shape
    size = min(11, h, w)
    size -= 1 - size % 2
    radius = size // 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = []
    for ch in range(c):
        x, y = a[ch].astype(np.float64), b[ch].astype(np.float64)

        def f(z):
            out = gaussian_filter(z, sigma=1.5, truncate=radius / 1.5, mode="constant")
            return out[radius : h - radius, radius : w - radius]

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 20), (1, 8, 8), (3, 6, 9)])
def test_ssim_matches_an_independent_computation(shape):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, *shape, generator=gen)
    b = (a + 0.2 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    got = ssim(a, b, 1.0)
    want = [_reference_ssim(a[i].numpy(), b[i].numpy(), 1.0) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert got.shape == (3,)


def test_ssim_known_properties():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 28, 28, generator=gen)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-12)
    noisy = [(x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1) for s in (0.05, 0.2, 0.5)]
    scores = [ssim(x, n).mean() for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    np.testing.assert_allclose(ssim(x, noisy[1]), ssim(noisy[1], x), atol=1e-12)
    assert ssim(x, 1 - x).mean() < 0  # anti-correlated structure
    # a 0–255 image scored with data range 255 equals the 0–1 image scored with range 1
    np.testing.assert_allclose(ssim(255 * x, 255 * noisy[0], 255.0), ssim(x, noisy[0]), atol=1e-9)
    assert ssim_window_size(8, 8) == 7 and ssim_window_size(28, 28) == 11
    assert ssim_window_size(6, 9) == 5


def test_psnr_and_rmse_of_a_known_error():
    a = torch.zeros(2, 1, 4, 4)
    b = a + torch.tensor([0.1, 0.01]).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(rmse(a, b), [0.1, 0.01], rtol=1e-6)
    np.testing.assert_allclose(psnr(a, b, 1.0), [20.0, 40.0], rtol=1e-6)
    np.testing.assert_allclose(psnr(a, 2 * b, 2.0), [20.0, 40.0], rtol=1e-6)  # range-relative
    assert psnr(a, a)[0] == math.inf and psnr_of_mse(0.01) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[:1, :, :2])


def test_matching_undoes_a_permutation_and_scores_labels():
    gen = torch.Generator().manual_seed(2)
    truth = torch.rand(4, 1, 8, 8, generator=gen)
    labels = torch.tensor([3, 1, 4, 1])
    perm = torch.tensor([2, 0, 3, 1])
    recon = truth[perm] + 0.01 * torch.randn(4, 1, 8, 8, generator=gen)
    m = match_reconstructions(recon, truth, recon_labels=labels[perm], true_labels=labels)
    # truth i is matched with the reconstruction that holds it: recon[k] = truth[perm[k]]
    assert (perm[m.permutation] == torch.arange(4)).all()
    assert m.label_accuracy == 1.0 and m.label_set_accuracy == 1.0
    assert (m.psnr > 35).all() and (m.ssim > 0.95).all()
    s = m.summary()
    assert s["pairs"] == 4 and s["psnr"] == pytest.approx(float(m.psnr.mean()))

    wrong = labels[perm].clone()
    wrong[0] = 9  # reconstruction 0 (truth 2, label 4) gets a wrong label
    m = match_reconstructions(recon, truth, recon_labels=wrong, true_labels=labels)
    assert m.label_accuracy == 0.75 and m.label_set_accuracy == 0.75


def test_matching_fewer_reconstructions_than_images():
    gen = torch.Generator().manual_seed(3)
    truth = torch.rand(4, 1, 8, 8, generator=gen)
    m = match_reconstructions(truth[2:3].clone(), truth)
    assert m.truth_index.tolist() == [2] and m.recon_index.tolist() == [0]
    assert m.psnr[0] == math.inf
