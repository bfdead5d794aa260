"""Atomic files and the model store: safetensors weights + JSON metadata, keyed by config hash.

Nothing here unpickles: weights are safetensors and metadata is JSON, so a model file from an
untrusted source cannot execute code. Every write goes to a temporary file that is fsynced and
renamed into place, so an interrupted run never leaves a half-written result behind; a failed
write (a full disk) removes the temporary file and raises :class:`StoreError`.

The store cannot lie: a cached model is used only if its weights hash to the ``model_sha256``
recorded beside them, and a ``state/`` entry only if its content matches the checksum stored
in it; anything else is warned about (naming the file) and recomputed. A per-key lock file
(:func:`cache_lock`) makes a second process wait for the first's model instead of training
its own copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from privlab.run.backend import ONE_CPU, Backend, Resources

#: the key of a ``state/`` entry's checksum, stored beside the result in the same file
CHECKSUM_KEY = "_sha256"


class ModelFileError(ValueError):
    """A stored model is missing, corrupt, holds non-finite weights, or does not match the
    sha256 recorded for it."""


class StoreError(OSError):
    """A write to the store failed (a full disk, no permission). ``str()`` is one line naming
    the path; ``errno`` and ``filename`` are those of the failed write."""

    def __str__(self) -> str:
        return str(self.strerror)


def _store_error(path: Path, err: OSError) -> StoreError:
    reason = err.strerror or str(err)
    return StoreError(err.errno, f"cannot write {path}: {reason}", str(path))


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


# ---------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it into place.

    On any failure the temporary file is removed and ``path`` keeps its old content; an
    OSError (ENOSPC, EACCES, …) is raised as :class:`StoreError` naming ``path``.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
        tmp = None
    except StoreError:
        raise
    except OSError as err:
        raise _store_error(path, err) from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(path.parent)


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


# ---------------------------------------------------------------- checksummed state entries


def json_sha256(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` as it is stored (non-finite floats as null)."""
    blob = json.dumps(_json_safe(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_checked_json(path: Path, result: Mapping[str, Any]) -> None:
    """Write ``result`` atomically with the sha256 of its content beside it in the file."""
    if CHECKSUM_KEY in result:
        raise ValueError(f"{path}: a result may not use the reserved key {CHECKSUM_KEY!r}")
    atomic_write_json(path, {**result, CHECKSUM_KEY: json_sha256(dict(result))})


def read_checked_json(path: Path) -> dict[str, Any]:
    """The result stored by :func:`write_checked_json`; a ValueError naming ``path`` if the
    file is not valid JSON (truncated), has no checksum, or was edited since it was written."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    recorded = data.pop(CHECKSUM_KEY, None)
    if recorded is None:
        raise ValueError(f"{path}: no checksum")
    if recorded != json_sha256(data):
        raise ValueError(f"{path}: content does not match its checksum (edited or damaged)")
    return data


def cached_json(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON result stored at ``path``, or ``compute()`` written there atomically: how an
    interrupted run resumes from the units it finished. A stored result that fails its
    checksum (truncated, edited, invalid JSON) is warned about and recomputed."""
    if path.is_file():
        try:
            return read_checked_json(path)
        except ValueError as err:
            warnings.warn(f"recomputing an unusable state entry: {err}", stacklevel=2)
    result = compute()
    write_checked_json(path, result)
    return dict(result)


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


# ---------------------------------------------------------------- models


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


# ---------------------------------------------------------------- checkpoints


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


# ---------------------------------------------------------------- locks


def _fcntl() -> ModuleType | None:
    try:
        return importlib.import_module("fcntl")
    except ImportError:  # Windows: no flock; atomic writes and verified loads still hold
        return None


@contextlib.contextmanager
def cache_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path.with_suffix('.lock')`` (one per cache key) while
    checking the cache and training, so that a second process waits and then loads the
    first's model. ``on_wait`` is called once if another process holds the lock.

    Degrades to no lock where there is no ``fcntl`` or the lock file cannot be created or
    locked (a read-only cache, a file system without locks). Lock files are left in place:
    removing one while another process waits on it would break the exclusion.
    """
    fcntl = _fcntl()
    fd: int | None = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path.with_suffix(".lock"), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        if fcntl is not None and fd is not None:
            _acquire(fcntl, fd, on_wait)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _acquire(fcntl: ModuleType, fd: int, on_wait: Callable[[], None] | None) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
    except OSError:
        return  # no locking on this file system (ENOLCK): proceed unlocked
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)
