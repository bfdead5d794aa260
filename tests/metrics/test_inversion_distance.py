"""Model-inversion success by distance: τ against a brute-force computation, and what passes
the test (a slightly perturbed private image) and what does not (a constant grey image the
evaluator accepts)."""

import numpy as np
import pytest
import torch

from privlab.metrics.inversion_distance import (
    class_mean_success,
    distance_success,
    distance_threshold,
    nearest_same_class_mse,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _brute_force_tau(px, py, hx, hy, lo, hi, classes=None):
    """τ written out with loops, in Maciazek & Allison's direction: for every held-out image
    of a class with private images, the per-pixel MSE (images mapped to [−1, 1]) to its
    nearest private image of that class, averaged over those held-out images."""
    px, hx = np.asarray(px, np.float64), np.asarray(hx, np.float64)
    nearest = []
    for j in range(len(hx)):
        if classes is not None and int(hy[j]) not in classes:
            continue
        b = 2 * (hx[j] - lo) / (hi - lo) - 1
        best = None
        for i in range(len(px)):
            if int(py[i]) != int(hy[j]):
                continue
            a = 2 * (px[i] - lo) / (hi - lo) - 1
            d = float(((a - b) ** 2).sum() / a.size)
            best = d if best is None else min(best, d)
        if best is not None:
            nearest.append(best)
    return sum(nearest) / len(nearest)


def _data(seed=0, lo=-2.0, hi=3.0):
    gen = torch.Generator().manual_seed(seed)
    px = lo + (hi - lo) * torch.rand(23, 2, 3, 3, generator=gen)
    py = torch.randint(0, 4, (23,), generator=gen)
    hx = lo + (hi - lo) * torch.rand(17, 2, 3, 3, generator=gen)
    hy = torch.randint(0, 3, (17,), generator=gen)  # class 3 has no held-out images
    return px, py, hx, hy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tau_matches_brute_force(seed):
    lo, hi = -2.0, 3.0
    px, py, hx, hy = _data(seed, lo, hi)
    assert (py == 3).any()  # private images of a class without held-out images are left out
    tau = distance_threshold(px, py, hx, hy, value_range=(lo, hi))
    assert tau == pytest.approx(_brute_force_tau(px, py, hx, hy, lo, hi), rel=1e-9)
    some = distance_threshold(px, py, hx, hy, value_range=(lo, hi), classes=[0, 2])
    assert some == pytest.approx(_brute_force_tau(px, py, hx, hy, lo, hi, {0, 2}), rel=1e-9)


def test_tau_needs_held_out_images_of_the_private_classes():
    px, py, hx, hy = _data()
    with pytest.raises(ValueError, match="held-out"):
        distance_threshold(px, py, hx, hy, classes=[3])


def test_nearest_same_class_mse_matches_brute_force():
    lo, hi = -2.0, 3.0
    px, py, hx, hy = _data(5, lo, hi)
    mse, index = nearest_same_class_mse(px, py, hx, hy, value_range=(lo, hi))
    for i in range(len(px)):
        pool = [j for j in range(len(hx)) if hy[j] == py[i]]
        if not pool:
            assert mse[i] == float("inf") and index[i] == -1
            continue
        d = [float(((2 * (px[i].double() - hx[j].double()) / (hi - lo)) ** 2).mean()) for j in pool]
        assert float(mse[i]) == pytest.approx(min(d), rel=1e-9)
        assert int(index[i]) == pool[int(np.argmin(d))]


def _classes(seed=0, n=30, shape=(1, 12, 12)):
    """Two 'digit' classes: a bright stroke (row 3 or column 3) on black, each image a random
    jitter of stroke width and intensity, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(2 * n, *shape)
    y = torch.arange(2).repeat_interleave(n)
    for i in range(2 * n):
        width = int(torch.randint(1, 4, (1,), generator=gen))
        start = int(torch.randint(2, 7, (1,), generator=gen))
        value = 0.7 + 0.3 * torch.rand(1, generator=gen)
        if y[i] == 0:
            x[i, :, start : start + width, :] = value
        else:
            x[i, :, :, start : start + width] = value
        x[i] += 0.05 * torch.rand(shape, generator=gen)
    return x.clamp(0, 1), y


def test_grey_blob_the_evaluator_accepts_is_not_a_distance_success():
    private_x, private_y = _classes(0)
    held_x, held_y = _classes(1)
    tau = distance_threshold(private_x, private_y, held_x, held_y)
    grey = torch.full((2, 1, 12, 12), 0.5)  # a constant image per class
    out = distance_success(
        grey, torch.tensor([0, 1]), private_x, private_y, tau=tau, evaluator_hit=[True, True]
    )
    assert out["dist_success"] == 0.0 and out["both_success"] == 0.0
    assert out["image_within_tau"] == [False, False] and out["image_both"] == [False, False]
    assert min(out["image_nearest_mse"]) > tau
    assert out["per_class"]["0"]["both_success"] == 0.0


def test_perturbed_copy_of_a_private_image_is_a_success_and_both_needs_the_evaluator():
    private_x, private_y = _classes(0)
    held_x, held_y = _classes(1)
    tau = distance_threshold(private_x, private_y, held_x, held_y)
    gen = torch.Generator().manual_seed(3)
    copies = (private_x[[4, 40]] + 0.02 * torch.randn(2, 1, 12, 12, generator=gen)).clamp(0, 1)
    labels = private_y[[4, 40]]
    out = distance_success(copies, labels, private_x, private_y, tau=tau, evaluator_hit=[1, 0])
    assert out["image_within_tau"] == [True, True] and out["dist_success"] == 1.0
    assert out["image_both"] == [True, False] and out["both_success"] == 0.5
    assert max(out["image_nearest_mse"]) < tau and out["tau"] == tau
    assert out["per_class"] == {
        "0": {
            "dist_success": 1.0,
            "both_success": 1.0,
            "nearest_mse": pytest.approx(out["image_nearest_mse"][0]),
        },
        "1": {
            "dist_success": 1.0,
            "both_success": 0.0,
            "nearest_mse": pytest.approx(out["image_nearest_mse"][1]),
        },
    }


def test_a_copy_labelled_with_another_class_is_not_a_success():
    private_x, private_y = _classes(0)
    held_x, held_y = _classes(1)
    tau = distance_threshold(private_x, private_y, held_x, held_y)
    out = distance_success(
        private_x[:1], torch.tensor([1]), private_x, private_y, tau=tau, evaluator_hit=[True]
    )
    assert out["image_within_tau"] == [False] and out["both_success"] == 0.0


def test_without_tau_only_distances_are_reported():
    private_x, private_y = _classes(0)
    out = distance_success(
        private_x[:2], private_y[:2], private_x, private_y, tau=None, evaluator_hit=[1, 1]
    )
    assert out["dist_success"] is None and out["both_success"] is None
    assert out["nearest_mse"] == pytest.approx(0.0, abs=1e-9)
    assert out["image_within_tau"] == [None, None]
    with pytest.raises(ValueError, match="entries"):
        distance_success(
            private_x[:2], private_y[:2], private_x, private_y, tau=1.0, evaluator_hit=[True]
        )


def test_class_mean_success_against_a_direct_computation():
    private_x, private_y = _classes(0)
    for tau in (0.0, 0.05, 10.0):
        expected = []
        for c in (0, 1):
            mean = private_x[private_y == c].mean(0)
            d = ((2 * (private_x[private_y == c] - mean)) ** 2).flatten(1).mean(1)
            expected.append(float(d.min()) <= tau)
        assert class_mean_success(private_x, private_y, tau) == pytest.approx(np.mean(expected))
    assert class_mean_success(private_x, private_y, 10.0, classes=[1]) == 1.0
