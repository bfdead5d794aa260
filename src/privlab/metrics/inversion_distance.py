"""Model-inversion success by distance: is a reconstruction as close to a private image of its
class as a genuinely new image of that class gets?

An evaluator classifier that agrees with a reconstruction's class (Acc@1) also accepts images
that resemble no private image at all (a grey blob of the right average shape). This module
judges a reconstruction in pixel space instead, in the spirit of Maciazek & Allison's threshold
(:mod:`privlab.metrics.reconstruction`). Images are mapped to [−1, 1] from their value range
and compared by the per-pixel mean squared error

    ℓ(a, b) = (1/d) Σ_k (a_k − b_k)²,    d = number of pixels (× channels).

For private images Z = {(z_i, y_i)} and held-out images H = {(h_j, y'_j)} of the same classes
(disjoint examples: the non-members), the threshold is, in Maciazek & Allison's direction
(validation → nearest training image),

    τ = (1/|Q|) Σ_{j ∈ Q} min_{i : y_i = y'_j} ℓ(h_j, z_i),

Q = the held-out images whose class has private images (and is attacked, when ``classes`` is
given): how close a genuinely new image of the class typically gets to the nearest private
image of that class. A reconstruction r of class c
*succeeds by distance* when d(r) = min_{i : y_i = c} ℓ(r, z_i) ≤ τ.

What it does and does not reject: an image far from every private image of its class in
pixels (a constant mid-grey image, adversarial noise) fails it however confident the evaluator
is. A *blurry class mean* can pass it: in MSE the centroid of a class is closer to its members
than they are to one another (on mnist5k with 8 styles per digit, seed 0: τ = 0.148, the mean
image of every class is within it, and half of the non-members are).
:func:`class_mean_success` measures that level for the data at hand: the distance success of
a reconstructor that outputs each class's mean image, the no-information level against which a
distance success is read.
:func:`heldout_success` gives the other reference: how often a genuinely new image of the
class (a non-member) is within τ of a private image of its class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from privlab.metrics.inversion import nearest_by_class
from privlab.metrics.reconstruction import pairwise_mse, to_symmetric


def nearest_same_class_mse(
    x: torch.Tensor,
    y: torch.Tensor,
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``x``: ℓ to, and index of, the nearest ``pool`` image of its class
    (float64 MSE on images mapped to [−1, 1]; inf and −1 where the pool has none)."""
    return nearest_by_class(
        x,
        y,
        pool_x,
        pool_y,
        lambda a, b: pairwise_mse(to_symmetric(a, value_range), to_symmetric(b, value_range)),
    )


def distance_threshold(
    private_x: torch.Tensor,
    private_y: torch.Tensor,
    heldout_x: torch.Tensor,
    heldout_y: torch.Tensor,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    classes: Sequence[int] | None = None,
) -> float:
    """τ = (1/|Q|) Σ_{j∈Q} min_{i: y_i = y'_j} ℓ(h_j, z_i) (module docstring): the mean over
    held-out images of the MSE to the nearest private image of the same class, images mapped
    to [−1, 1]. ``classes``: only held-out images of these classes count (default: all).
    Raises ValueError when no held-out image has a private image of its class."""
    keep = torch.isin(heldout_y, private_y)
    if classes is not None:
        keep &= torch.isin(heldout_y, torch.as_tensor(list(classes), dtype=heldout_y.dtype))
    if not bool(keep.any()):
        raise ValueError("need held-out images of the private images' classes to set τ")
    mse, _ = nearest_same_class_mse(
        heldout_x[keep], heldout_y[keep], private_x, private_y, value_range=value_range
    )
    return float(mse.mean())


def distance_success(
    images: torch.Tensor,
    labels: torch.Tensor,
    private_x: torch.Tensor,
    private_y: torch.Tensor,
    *,
    tau: float | None,
    evaluator_hit: np.ndarray | Sequence[bool],
    value_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Per reconstruction: ℓ to the nearest private image of its class, whether that is ≤ τ,
    and whether the evaluator agrees as well ("both"); overall and per-class rates of each.

    Returns ``tau``, ``dist_success``, ``both_success``, ``nearest_mse`` (means), ``per_class``
    (str(class) → the same three) and the per-image lists ``image_nearest_mse``,
    ``image_within_tau``, ``image_both``. With ``tau`` None (no held-out data) the success
    rates are None and only the distances are reported."""
    mse, _ = nearest_same_class_mse(images, labels, private_x, private_y, value_range=value_range)
    d = mse.numpy()
    hit = np.asarray(evaluator_hit, dtype=bool)
    if hit.shape != d.shape:
        raise ValueError(f"evaluator_hit has {hit.size} entries for {d.size} reconstructions")
    within = d <= tau if tau is not None else np.zeros_like(hit)
    both = within & hit
    lab = labels.numpy()

    def rates(mask: np.ndarray) -> dict[str, float | None]:
        finite = d[mask][np.isfinite(d[mask])]
        return {
            "dist_success": float(within[mask].mean()) if tau is not None else None,
            "both_success": float(both[mask].mean()) if tau is not None else None,
            "nearest_mse": float(finite.mean()) if finite.size else None,
        }

    return {
        "tau": tau,
        **rates(np.ones_like(hit)),
        "per_class": {str(int(c)): rates(lab == c) for c in np.unique(lab)},
        "image_nearest_mse": [float(v) if np.isfinite(v) else None for v in d],
        "image_within_tau": within.tolist() if tau is not None else [None] * len(d),
        "image_both": both.tolist() if tau is not None else [None] * len(d),
    }


def class_mean_success(
    private_x: torch.Tensor,
    private_y: torch.Tensor,
    tau: float,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    classes: Sequence[int] | None = None,
) -> float:
    """The fraction of classes (of ``classes``, default all) whose mean private image is within
    τ of its nearest private image of the class: the distance success of a blurry class-mean
    "reconstruction" that needs no model at all."""
    present = private_y.unique()
    if classes is not None:
        present = present[torch.isin(present, torch.as_tensor(list(classes)))]
    if len(present) == 0:
        raise ValueError("no private images of the requested classes")
    means = torch.stack([private_x[private_y == c].mean(0) for c in present])
    mse, _ = nearest_same_class_mse(means, present, private_x, private_y, value_range=value_range)
    return float((mse <= tau).double().mean())


def heldout_success(
    private_x: torch.Tensor,
    private_y: torch.Tensor,
    heldout_x: torch.Tensor,
    heldout_y: torch.Tensor,
    tau: float,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    classes: Sequence[int] | None = None,
) -> float:
    """The fraction of held-out images (of ``classes``, default all, with private images of
    their class) within τ of a private image of their class: the distance success of a real
    image of the class that the model never saw."""
    keep = torch.isin(heldout_y, private_y)
    if classes is not None:
        keep &= torch.isin(heldout_y, torch.as_tensor(list(classes), dtype=heldout_y.dtype))
    if not bool(keep.any()):
        raise ValueError("no held-out images of the private images' classes")
    mse, _ = nearest_same_class_mse(
        heldout_x[keep], heldout_y[keep], private_x, private_y, value_range=value_range
    )
    return float((mse <= tau).double().mean())


__all__ = [
    "class_mean_success",
    "distance_success",
    "distance_threshold",
    "heldout_success",
    "nearest_same_class_mse",
]
