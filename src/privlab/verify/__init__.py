"""Bound propagation over an L∞ ball clipped to the input range (used by verified training
and the verified worst-case attack I_V)."""

from privlab.verify.crown import (
    crown_bounds,
    crown_ibp_bounds,
    interval_spec_bounds,
    margin_spec,
    worst_case_from_margins,
)
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
    "crown_ibp_bounds",
    "interval_bounds",
    "interval_spec_bounds",
    "margin_spec",
    "worst_case_from_margins",
    "worst_case_logits",
]
