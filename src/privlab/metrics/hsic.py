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
label. Computed in float64; m × m inverses take milliseconds at a batch of 128. The estimator is
not scale-invariant (the kernel's bandwidth is fixed), so :func:`layer_hsic` reports the
scale-invariant measures of :mod:`privlab.metrics.dependency` beside it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privlab.metrics.dependency import distance_correlation, linear_cka

Kernel = Literal["gaussian", "linear"]
EPSILON = 1e-5


def _squared_distances(a: torch.Tensor) -> torch.Tensor:
    """‖a_i − a_j‖² for every pair of rows, by ``torch.cdist`` (through one m × m matrix
    product: the m × m × d difference it replaces was half of a BiDO training step)."""
    return torch.cdist(a, a).pow(2)


def kernel_matrix(
    a: torch.Tensor, kind: Kernel = "gaussian", sigma: float | None = 5.0
) -> torch.Tensor:
    """m × m kernel of the rows of ``a`` (flattened), in float64."""
    a = a.reshape(len(a), -1).double()
    if kind == "linear":
        return a @ a.T
    if kind != "gaussian":
        raise ValueError(f"unknown kernel {kind!r}; use gaussian or linear")
    sq = _squared_distances(a)
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


def hsic_tensor(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    kernel_a: Kernel = "gaussian",
    kernel_b: Kernel = "gaussian",
    sigma: float | None = 5.0,
    eps: float = EPSILON,
) -> torch.Tensor:
    """nHSIC(A, B) as a differentiable float64 scalar (BiDO trains through it)."""
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} rows but b has {len(b)}")
    if len(a) < 2:
        raise ValueError("nHSIC needs at least two examples")
    r_a = _normalised(kernel_matrix(a, kernel_a, sigma), eps)
    r_b = _normalised(kernel_matrix(b, kernel_b, sigma), eps)
    return (r_a * r_b.T).sum()


@torch.no_grad()
def normalized_hsic(a: torch.Tensor, b: torch.Tensor, **options: Any) -> float:
    """nHSIC(A, B) = tr(R_A R_B) of BiDO's normalised-CCA estimator (see the module docstring);
    ``options`` are those of :func:`hsic_tensor`."""
    return float(hsic_tensor(a, b, **options))


def hidden_layers(model: nn.Module, which: Literal["penultimate", "relu"]) -> list[nn.Module]:
    """The layers whose outputs count as hidden representations Z_l: every ReLU, or the module
    feeding the last Linear layer (its input is the penultimate feature)."""
    layers: list[nn.Module]
    if which == "relu":
        layers = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    elif which == "penultimate":
        layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        layers = layers[-1:]
    else:
        raise ValueError(f"unknown layers {which!r}; use penultimate or relu")
    if not layers:
        raise ValueError(f"the model has no {which} layer to measure")
    return layers


def capture_hidden(
    model: nn.Module, x: torch.Tensor, which: Literal["penultimate", "relu"]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the hidden representations Z_l of ``x`` (graph kept: usable in a loss)."""
    layers = hidden_layers(model, which)
    captured: list[torch.Tensor] = []
    if which == "penultimate":
        hooks = [
            layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            for layer in layers
        ]
    else:
        hooks = [
            layer.register_forward_hook(lambda _m, _a, out: captured.append(out))
            for layer in layers
        ]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, captured


def _batch_measures(
    x: torch.Tensor, onehot: torch.Tensor, z: torch.Tensor, sigma: float | None
) -> tuple[float, ...]:
    """nHSIC, bias-corrected distance correlation and debiased linear CKA of Z with X and Y
    (the last four NaN for batches under 4 examples, which they need)."""
    hsic = (
        normalized_hsic(x, z, sigma=sigma),
        normalized_hsic(onehot, z, kernel_a="linear", sigma=sigma),
    )
    if len(x) < 4:
        return (*hsic, *[float("nan")] * 4)
    return (
        *hsic,
        distance_correlation(x, z),
        distance_correlation(onehot, z),
        linear_cka(x, z),
        linear_cka(onehot, z),
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


#: the per-layer keys of :func:`layer_hsic`, in the order of :func:`_batch_measures`
LAYER_MEASURES = ("hsic_xz", "hsic_yz", "dcor_xz", "dcor_yz", "cka_xz", "cka_yz")


@torch.no_grad()
def layer_hsic(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    which: Literal["penultimate", "relu"] = "relu",
    batch_size: int = 128,
    sigma: float | None = 5.0,
) -> list[dict[str, float | None]]:
    """Per hidden layer, nHSIC(X, Z_l) and nHSIC(Y, Z_l) averaged over full batches (the
    replication code's evaluation: Gaussian kernels, linear kernel on one-hot Y), and beside
    them the scale-invariant bias-corrected distance correlation (``dcor_*``) and debiased
    linear CKA (``cka_*``) of :mod:`privlab.metrics.dependency` on the same batches (None
    for batches under 4 examples)."""
    model = model.eval()
    rows = []  # per full batch (drop_last, as BiDO needs): layers × measures
    for i in range(0, len(y) - batch_size + 1, batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        _, hidden = capture_hidden(model, xb, which)
        onehot = F.one_hot(yb, num_classes)
        rows.append([_batch_measures(xb, onehot, z, sigma) for z in hidden])
    if not rows:
        raise ValueError(f"need at least one full batch of {batch_size} examples")
    means = np.mean(rows, axis=0)
    return [
        {"layer": i, **{k: _finite(v) for k, v in zip(LAYER_MEASURES, layer, strict=True)}}
        for i, layer in enumerate(means)
    ]
