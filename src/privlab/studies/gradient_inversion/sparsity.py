"""How sparse a client's update is before and after a defence (Liu et al.'s pruning rate p
counts the entries a defence zeroes, but a gradient is often sparse already: on MNIST most
pixels are 0, so most first-layer weight gradients are too, and p = 0.5 changes nothing).

An entry counts as zero when it is exactly 0.0; fractions are over all the update's entries
(every parameter together), averaged over the attacked batches. *Before*: the undefended update
of the same batch at the same weights and schedule; *after*: what the server observes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from privlab.federated.observation import GradientObservation


def zero_fraction(gradients: Mapping[str, torch.Tensor]) -> float:
    """The fraction of the entries of all tensors together that are exactly zero."""
    total = sum(g.numel() for g in gradients.values())
    if total == 0:
        raise ValueError("an update with no entries")
    zeros = sum(int((g == 0).sum()) for g in gradients.values())
    return zeros / total


def update_sparsity(
    clean: Sequence[GradientObservation], defended: Sequence[GradientObservation]
) -> dict[str, Any]:
    """The mean zero fraction of the undefended (``before``) and observed (``after``) updates
    of the same batches, and the share of the nonzero entries the defence zeroed
    (``effective``: (after − before)/(1 − before); None when nothing was nonzero)."""
    if len(clean) != len(defended) or not clean:
        raise ValueError(
            f"need as many clean as defended updates (≥ 1): {len(clean)}, {len(defended)}"
        )
    before = sum(zero_fraction(o.gradients) for o in clean) / len(clean)
    after = sum(zero_fraction(o.gradients) for o in defended) / len(defended)
    return {
        "zero_fraction_before": before,
        "zero_fraction_after": after,
        "effective": None if before >= 1 else (after - before) / (1 - before),
    }
