"""Models handed to :func:`privlab.auditing` as Python objects, addressed as ``memory:<key>``
model specs for the run (they never leave the process, and are never modified)."""

from __future__ import annotations

import copy

import torch
from torch import nn

_MODELS: dict[str, nn.Module] = {}


def register(model: nn.Module) -> str:
    """Keep a private copy of ``model``; its spec for the ``user_model`` component."""
    key = f"memory:{id(model):x}-{len(_MODELS)}"
    _MODELS[key] = copy.deepcopy(model).cpu()
    return key


def build(spec: str, *, fresh: bool) -> nn.Module:
    """A copy of the registered model: with its weights, or (``fresh``) re-initialised under
    torch's current seed, for shadow and reference models of the same architecture."""
    if spec not in _MODELS:
        raise ValueError(f"{spec}: no such in-memory model (it lives only in the auditing process)")
    model = copy.deepcopy(_MODELS[spec])
    if fresh:
        with torch.no_grad():
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    return model


def release(spec: str) -> None:
    _MODELS.pop(spec, None)
