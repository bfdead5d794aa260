"""A run's finished units and a long computation's checkpoints.

:class:`StateDir` keeps each finished unit of a run as one checksummed JSON file under
``<run>/state/``, so an interrupted run resumes from what it finished; :class:`FileCheckpoint`
keeps a computation's progress (tensors and all) in one safetensors file. Nothing unpickles,
and an entry that fails its checksum is warned about and recomputed.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from privlab.run.backend import ONE_CPU, Backend, Resources
from privlab.run.files import (
    atomic_write_bytes,
    cached_json,
    read_checked_json,
    stable_hash,
    write_checked_json,
)
from privlab.run.weights import tensors_sha256


class StateDir:
    """Finished units of a run, one JSON file each under ``<run>/state/``, named by a readable
    prefix and the hash of the key (everything the unit depends on, stored beside it)."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "state"

    def path(self, prefix: str, key: dict[str, Any]) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix)
        return self.dir / f"{safe}-{stable_hash(key)[:16]}.json"

    def get_or_run(
        self, prefix: str, key: dict[str, Any], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """``fn()``'s result, from ``state/`` when a verified entry for ``key`` is there."""
        entry = cached_json(self.path(prefix, key), lambda: {"key": key, "result": fn()})
        return dict(entry["result"])

    def has(self, prefix: str, key: dict[str, Any]) -> bool:
        """Whether a verified entry for ``key`` is there (a damaged one is not)."""
        path = self.path(prefix, key)
        try:
            return path.is_file() and "result" in read_checked_json(path)
        except ValueError:
            return False

    def fill(
        self,
        backend: Backend,
        fn: Callable[..., dict[str, Any]],
        units: Sequence[tuple[str, dict[str, Any], Any]],
        *,
        shared: Mapping[str, Any] | None = None,
        resources: Resources = ONE_CPU,
    ) -> int:
        """Run the ``units`` (prefix, key, item) missing from ``state/`` on ``backend``,
        ``fn(item, **shared)`` each, and write every result the moment it arrives, so that
        ``get_or_run`` then finds them all (and an interrupted run keeps what finished).
        Returns how many ran."""
        todo = [unit for unit in units if not self.has(unit[0], unit[1])]
        items = [item for _, _, item in todo]
        for i, result in backend.map(fn, items, shared=shared, resources=resources):
            prefix, key, _ = todo[i]
            write_checked_json(self.path(prefix, key), {"key": key, "result": result})
        return len(todo)


def _encode(obj: Any, tensors: dict[str, torch.Tensor], at: str) -> Any:
    """``obj`` as JSON with its tensors moved into ``tensors`` (named by their path), dict
    keys of any type and non-finite floats kept: the inverse of :func:`_decode`."""
    if isinstance(obj, torch.Tensor):
        tensors[at] = obj.detach().cpu().contiguous().clone()
        return {"$t": at}
    if isinstance(obj, Mapping):
        return {"$kv": [[k, _encode(v, tensors, f"{at}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_encode(v, tensors, f"{at}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$f": repr(obj)}
    return obj


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "$t" in obj:
            return tensors[obj["$t"]]
        if "$f" in obj:
            return float(obj["$f"])
        return {k: _decode(v, tensors) for k, v in obj["$kv"]}
    return obj


class FileCheckpoint:
    """A long computation's progress in one safetensors file: the tensors, and the rest of
    the state as JSON in its header with the checksum of the tensors and the ``key`` of the
    computation. ``load`` gives None (with a warning naming the file when one is there) for
    a missing, corrupt or foreign file; nothing is unpickled."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path, self.key = Path(path), stable_hash(key)

    def save(self, state: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {}
        tree = json.dumps(_encode(state, tensors, "s"))
        meta = {"key": self.key, "tree": tree, "sha256": tensors_sha256(tensors)}
        atomic_write_bytes(self.path, safetensors_bytes(tensors, metadata=meta))

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as fh:  # one read: header, tensors
                meta = fh.metadata() or {}
                tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
            if meta.get("key") != self.key:
                raise ValueError("it belongs to another computation")
            if meta.get("sha256") != tensors_sha256(tensors):
                raise ValueError("its tensors do not match their recorded sha256")
            state = _decode(json.loads(meta["tree"]), tensors)
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(f"ignoring checkpoint {self.path} and starting over: {err}", stacklevel=2)
            return None
        return dict(state)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
