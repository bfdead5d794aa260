"""Atomic files and the model store: safetensors weights + JSON metadata, keyed by config hash.

Nothing here unpickles: weights are safetensors and metadata is JSON, so a model file from an
untrusted source cannot execute code. Every write goes to a temporary file that is renamed
into place, so an interrupted run never leaves a half-written result behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


class ModelFileError(ValueError):
    """A stored model is missing, corrupt, or holds non-finite weights."""


def check_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` as a folder, or raise a ValueError naming it (a file in the way, no
    permission)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {what} {path}: {err.strerror or err}") from None


def stable_hash(obj: Any) -> str:
    """SHA-256 of canonical JSON: the cache key of a configuration."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: corrupt JSON ({err})") from None


def cached_json(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON result stored at ``path``, or ``compute()`` written there atomically: how an
    interrupted run resumes from the units it finished."""
    if path.is_file():
        return dict(read_json(path))
    result = compute()
    atomic_write_json(path, result)
    return dict(result)


class StateDir:
    """Finished units of a run, one JSON file each under ``<run>/state/``, named by a readable
    prefix and the hash of the key (everything the unit depends on, stored beside it)."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "state"

    def get_or_run(
        self, prefix: str, key: dict[str, Any], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix)
        path = self.dir / f"{safe}-{stable_hash(key)[:16]}.json"
        return dict(cached_json(path, lambda: {"key": key, "result": fn()})["result"])


def state_sha256(model: nn.Module) -> str:
    """Hash of a model's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model: nn.Module, path: Path, metadata: dict[str, Any]) -> str:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')``; returns the weights hash."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(state, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest = state_sha256(model)
    atomic_write_json(path.with_suffix(".json"), {**metadata, "model_sha256": digest})
    return digest


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelFileError(f"{path}: non-finite (NaN/inf) values in {', '.join(bad)}")


def load_state(model: nn.Module, path: Path) -> nn.Module:
    """Load weights saved by :func:`save_model` into ``model``; errors name the file."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: corrupt safetensors file ({err})") from None
    check_finite(state, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: weights do not fit the model ({err})") from None
    return model


def try_load_cached(model: nn.Module, path: Path) -> nn.Module | None:
    """Load a cache entry, or return None (with a warning) if it is absent or unusable."""
    if not path.is_file() or not path.with_suffix(".json").is_file():
        return None
    try:
        return load_state(model, path)
    except ModelFileError as err:
        warnings.warn(f"ignoring unusable cached model and retraining: {err}", stacklevel=2)
        return None
