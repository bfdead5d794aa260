"""Normalised HSIC (BiDO's ``hsic_normalized_cca``; SPEC §1, D4 / M10), the information
dependency measure of the AT-AT paper's claim C0.1.

For m examples with features A (m × d, rows flattened):

* Gaussian kernel K_ij = exp(−‖a_i − a_j‖² / (2σ²·d)) — the bandwidth scales with the feature
  dimension d; with ``sigma=None`` BiDO's median heuristic: K_ij = exp(−‖a_i − a_j‖² / (2s²))
  with s the median of the pairwise *squared* distances (their mean if the median is 0,
  at least 1e-2), exactly as its ``sigma_estimation``;
* linear kernel K = AAᵀ (BiDO's ``ktype: linear`` for one-hot labels);
* centring K̃ = K·H with H = I − 11ᵀ/m (right-multiplied only, as in BiDO);
* R_A = K̃_A (K̃_A + ε·m·I)⁻¹ with ε = 1e-5;
* nHSIC(A, B) = Σ_ij (R_A ∘ R_Bᵀ)_ij = tr(R_A R_B).

nHSIC(X, Z_l) measures how much a hidden layer Z_l depends on the input, nHSIC(Y, Z_l) on the
label. Computed in float64; m × m inverses take milliseconds at a batch of 128.
"""

from __future__ import annotations

from typing import Literal

import torch

Kernel = Literal["gaussian", "linear"]
EPSILON = 1e-5


def kernel_matrix(
    a: torch.Tensor, kind: Kernel = "gaussian", sigma: float | None = 5.0
) -> torch.Tensor:
    """m × m kernel of the rows of ``a`` (flattened), in float64."""
    a = a.reshape(len(a), -1).double()
    if kind == "linear":
        return a @ a.T
    if kind != "gaussian":
        raise ValueError(f"unknown kernel {kind!r}; use gaussian or linear")
    sq = (a.unsqueeze(1) - a.unsqueeze(0)).pow(2).sum(-1)
    if sigma is None:
        rows, cols = torch.tril_indices(len(a), len(a), offset=-1, device=a.device)
        tri = sq[rows, cols]
        med = tri.median() if tri.numel() else sq.new_tensor(1.0)
        if med <= 0:
            med = tri.mean()
        med = med.clamp_min(1e-2)
        return torch.exp(-sq / (2 * med * med))
    return torch.exp(-sq / (2 * sigma**2 * a.shape[1]))


def _normalised(k: torch.Tensor, eps: float) -> torch.Tensor:
    m = len(k)
    h = torch.eye(m, dtype=k.dtype, device=k.device) - 1.0 / m
    centred = k @ h
    return centred @ torch.linalg.inv(
        centred + eps * m * torch.eye(m, dtype=k.dtype, device=k.device)
    )


def normalized_hsic(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    kernel_a: Kernel = "gaussian",
    kernel_b: Kernel = "gaussian",
    sigma: float | None = 5.0,
    eps: float = EPSILON,
) -> float:
    """nHSIC(A, B) = tr(R_A R_B) of BiDO's normalised-CCA estimator (see the module docstring)."""
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} rows but b has {len(b)}")
    if len(a) < 2:
        raise ValueError("nHSIC needs at least two examples")
    r_a = _normalised(kernel_matrix(a, kernel_a, sigma), eps)
    r_b = _normalised(kernel_matrix(b, kernel_b, sigma), eps)
    return float((r_a * r_b.T).sum())
