"""Model weights on disk: safetensors + JSON metadata that records the weights' sha256.

Nothing here unpickles, so a model file from an untrusted source cannot execute code. A stored
model is used only if its weights are finite, fit the model, and hash to the ``model_sha256``
recorded beside them; errors name the file (:class:`ModelFileError`).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from privlab.run.files import atomic_write_bytes, atomic_write_json, read_json


class ModelFileError(ValueError):
    """A stored model is missing, corrupt, holds non-finite weights, or does not match the
    sha256 recorded for it."""


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hash of named tensors (names, shapes and values), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def state_sha256(model: nn.Module) -> str:
    """Hash of a model's parameters and buffers (names, shapes and values)."""
    return tensors_sha256(model.state_dict())


def save_model(model: nn.Module, path: Path, metadata: dict[str, Any]) -> str:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` (``metadata`` plus the
    weights' ``model_sha256``), each atomically; returns the weights hash. If the metadata
    cannot be written the weights are removed too, so no unverifiable pair is left."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(state, path)
    atomic_write_bytes(path, safetensors_bytes(state, metadata={"format": "pt"}))
    digest = tensors_sha256(state)
    try:
        atomic_write_json(path.with_suffix(".json"), {**metadata, "model_sha256": digest})
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise
    return digest


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelFileError(f"{path}: non-finite (NaN/inf) values in {', '.join(bad)}")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: corrupt safetensors file ({err})") from None
    check_finite(state, path)
    return state


def _check_recorded(state: dict[str, torch.Tensor], meta: Any, path: Path) -> None:
    """Raise ModelFileError unless ``meta`` records the sha256 of ``state``."""
    recorded = meta.get("model_sha256") if isinstance(meta, dict) else None
    if not isinstance(recorded, str):
        raise ModelFileError(f"{path}: no model_sha256 recorded in {path.with_suffix('.json')}")
    found = tensors_sha256(state)
    if found != recorded:
        raise ModelFileError(
            f"{path}: weights do not match the sha256 recorded in {path.with_suffix('.json')}"
            f" (recorded {recorded[:12]}…, found {found[:12]}…)"
        )


def _fit(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """Load ``state`` into ``model``, checking names and shapes first so that a mismatch
    leaves the model untouched (``load_state_dict`` copies what fits before it raises)."""
    own = model.state_dict()
    wrong = sorted(set(own) ^ set(state)) + [
        k for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape
    ]
    if wrong:
        shown = ", ".join(wrong[:5]) + (" …" if len(wrong) > 5 else "")
        raise ModelFileError(
            f"{path}: weights do not fit the model (missing, extra or differently shaped: {shown})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: weights do not fit the model ({err})") from None
    return model


def load_state(model: nn.Module, path: Path) -> nn.Module:
    """Load weights saved by :func:`save_model` into ``model``; errors name the file. When
    the JSON metadata is beside the weights, they must match its ``model_sha256``."""
    state = _read_weights(path)
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        try:
            _check_recorded(state, read_json(meta_path), path)
        except ValueError as err:
            raise ModelFileError(str(err)) from None
    return _fit(model, state, path)


def load_cached(model: nn.Module, path: Path) -> dict[str, Any] | None:
    """Load a cache entry into ``model`` and return its metadata, or None if it is absent or
    unusable: corrupt, non-finite, not fitting the model, or not matching the recorded
    sha256 (a warning names the file; the caller retrains and overwrites it). The model is
    left untouched unless the entry is used."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
        state = _read_weights(path)
        _check_recorded(state, meta, path)
        _fit(model, state, path)
    except FileNotFoundError:
        return None
    except ValueError as err:  # ModelFileError, or corrupt JSON metadata
        warnings.warn(f"ignoring unusable cached model and retraining: {err}", stacklevel=3)
        return None
    return dict(meta)


def try_load_cached(model: nn.Module, path: Path) -> nn.Module | None:
    """Load a cache entry, or return None (with a warning) if it is absent, unusable or does
    not match its recorded sha256: see :func:`load_cached`."""
    return model if load_cached(model, path) is not None else None
