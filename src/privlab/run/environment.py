"""Device choice and the software versions recorded in every report."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

from privlab import __version__


def resolve_device(name: str | None) -> torch.device:
    """'auto' → CUDA when present, else CPU; anything else must be a valid torch device."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"invalid device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    try:  # mps without Metal, cuda:7 on a one-GPU machine: refuse before anything runs
        torch.zeros(1).to(device)
    except (RuntimeError, AssertionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"device {name!r} is not available here ({reason}); use cpu, cuda or auto"
        ) from None
    return device


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in (
        "privlab",
        "torch",
        "numpy",
        "scipy",
        "scikit-learn",
        "opacus",
        "mlxtend",
        "safetensors",
        "pydantic",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def report_header(
    config: Any, kind: str, device: torch.device, schema_version: int
) -> dict[str, Any]:
    """The keys every ``kind:`` of report starts with: schema, config, seed, versions, device."""
    return {
        "schema_version": schema_version,
        "kind": kind,
        "config": config.model_dump(mode="json"),
        "seed": config.seed,
        "seeds": [config.seed],
        "versions": versions() | {"privlab": __version__},
        "device": str(device),
    }
