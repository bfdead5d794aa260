"""Bound propagation over an L∞ ball clipped to the input range (used by verified training
and the verified worst-case attack I_V)."""

from privlab.verify.crown import crown_bounds
from privlab.verify.intervals import (
    SUPPORTED_LAYERS,
    UnsupportedLayerError,
    interval_bounds,
    worst_case_logits,
)

__all__ = [
    "SUPPORTED_LAYERS",
    "UnsupportedLayerError",
    "crown_bounds",
    "interval_bounds",
    "worst_case_logits",
]
