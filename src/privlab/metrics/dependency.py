"""Scale-invariant dependency measures between two sets of representations of the same m
examples, beside BiDO's nHSIC (:mod:`privlab.metrics.hsic`).

nHSIC's Gaussian kernel has a fixed bandwidth (σ²·d), so multiplying a layer's activations by
a constant changes it, although a ReLU network can rescale a hidden layer (weights in × c,
weights out ÷ c) without changing its function. The measures here are invariant to
x ↦ c·Qx + t (c > 0, Q orthogonal, t a shift) of either argument, so they compare layers and
regimes on one scale:

* **linear CKA** (Kornblith et al. 2019): ⟨K̃, L̃⟩ / (‖K̃‖ ‖L̃‖) for the Gram matrices K = AAᵀ,
  L = BBᵀ;
* **distance correlation** (Székely, Rizzo & Bakirov 2007): the same alignment of the pairwise
  Euclidean distance matrices; zero (in the population) exactly when A and B are independent.

Both centre their matrices in one of two ways:

* ``debiased=True`` (default): U-centring (Székely & Rizzo 2014): for i ≠ j,
  M̃_ij = M_ij − M_i·/(m−2) − M_·j/(m−2) + M_··/((m−1)(m−2)), M̃_ii = 0 (a Gram matrix's
  diagonal is zeroed first). The inner product ⟨M̃, Ñ⟩/(m(m−3)) is an unbiased estimator of
  HSIC (Song et al. 2012) or of dCov²; the ratio is ≈ 0 for independent data even when the
  dimension exceeds m (where the plain estimators drift towards 1), and can be slightly
  negative. The distance correlation is then Székely & Rizzo's R*ₙ, on the scale of dCor².
* ``debiased=False``: double centring HMH (H = I − 11ᵀ/m), the classic V-statistics: linear
  CKA as Kornblith et al., and dCorₙ = sqrt(dCov²ₙ / sqrt(dVar²ₙ(A) dVar²ₙ(B))) in [0, 1].

Everything is computed in float64 on the rows flattened to vectors.
"""

from __future__ import annotations

import torch

__all__ = ["distance_correlation", "linear_cka"]


def _rows(a: torch.Tensor) -> torch.Tensor:
    return a.detach().reshape(len(a), -1).double()


def _check(a: torch.Tensor, b: torch.Tensor, debiased: bool) -> None:
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} rows but b has {len(b)}")
    least = 4 if debiased else 2
    if len(a) < least:
        raise ValueError(f"needs at least {least} examples, got {len(a)}")


def double_centred(m: torch.Tensor) -> torch.Tensor:
    """HMH with H = I − 11ᵀ/m: rows, columns and the whole matrix at mean zero."""
    return m - m.mean(0, keepdim=True) - m.mean(1, keepdim=True) + m.mean()


def u_centred(m: torch.Tensor) -> torch.Tensor:
    """Székely & Rizzo's U-centring of a symmetric matrix with zero diagonal."""
    n = len(m)
    out = (
        m
        - m.sum(0, keepdim=True) / (n - 2)
        - m.sum(1, keepdim=True) / (n - 2)
        + m.sum() / ((n - 1) * (n - 2))
    )
    return out.fill_diagonal_(0.0)


def _alignment(p: torch.Tensor, q: torch.Tensor, debiased: bool) -> float:
    """⟨P̃, Q̃⟩ / (‖P̃‖ ‖Q̃‖) of the centred matrices (0 when either is constant)."""
    centre = u_centred if debiased else double_centred
    p, q = centre(p), centre(q)
    denominator = torch.sqrt((p * p).sum() * (q * q).sum())
    return float((p * q).sum() / denominator) if denominator > 0 else 0.0


def linear_cka(a: torch.Tensor, b: torch.Tensor, *, debiased: bool = True) -> float:
    """Linear CKA between the rows of ``a`` and ``b`` (see the module docstring)."""
    _check(a, b, debiased)
    a, b = _rows(a), _rows(b)
    if not debiased:  # H(AAᵀ)H is the Gram matrix of the column-centred features
        a, b = a - a.mean(0), b - b.mean(0)
    k, l = a @ a.T, b @ b.T
    if debiased:
        k, l = k.fill_diagonal_(0.0), l.fill_diagonal_(0.0)
    return _alignment(k, l, debiased)


def distance_correlation(a: torch.Tensor, b: torch.Tensor, *, debiased: bool = True) -> float:
    """Distance correlation between the rows of ``a`` and ``b``: R*ₙ (bias-corrected, the scale
    of dCor²) or, with ``debiased=False``, the classic dCorₙ (see the module docstring)."""
    _check(a, b, debiased)
    a, b = _rows(a), _rows(b)
    exact = "donot_use_mm_for_euclid_dist"  # no cancellation: zero diagonal, exact symmetry
    da = torch.cdist(a, a, compute_mode=exact)
    db = torch.cdist(b, b, compute_mode=exact)
    r = _alignment(da, db, debiased)
    return r if debiased else max(r, 0.0) ** 0.5
