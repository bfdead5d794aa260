"""Images in reports: 0–255 bytes as hex with their shape (compact JSON, enough for a figure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def image_hex(x: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """A C×H×W image with pixel values in ``value_range`` as {shape, hex}."""
    lo, hi = value_range
    unit = ((x - lo) / (hi - lo)).clamp(0, 1)
    data = (unit * 255).round().to(torch.uint8).cpu().numpy()
    return {"shape": list(data.shape), "hex": data.tobytes().hex()}


def decode_image_hex(pixels: Mapping[str, Any]) -> Any:
    """{shape, hex} (C×H×W bytes) → an H×W or H×W×C array in [0, 1]."""
    raw = np.frombuffer(bytes.fromhex(pixels["hex"]), dtype=np.uint8)
    arr = raw.reshape(pixels["shape"]).astype(float) / 255.0
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
