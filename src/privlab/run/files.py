"""Atomic, verified files: every write goes to a temporary file that is fsynced and renamed
into place, so an interrupted run never leaves a half-written result behind; a failed write (a
full disk) removes the temporary file and raises :class:`StoreError`. A checksummed JSON entry
(:func:`write_checked_json`) is used only if its content matches the sha256 stored in it, and a
per-key lock file (:func:`cache_lock`) makes a second process wait for the first's work instead
of repeating it. A cached folder that one run uses (:func:`shared_use`) is not deleted by
another run that shares it and has finished with it (:func:`remove_unless_used`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

#: the key of a ``state/`` entry's checksum, stored beside the result in the same file
CHECKSUM_KEY = "_sha256"


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


# ---------------------------------------------------------------- locks


def _fcntl() -> ModuleType | None:
    try:
        return importlib.import_module("fcntl")
    except ImportError:  # Windows: no flock; atomic writes and verified loads still hold
        return None


def _lock_fd(path: Path) -> tuple[ModuleType, int] | None:
    """``fcntl`` and an open descriptor of ``path.with_suffix('.lock')``, or None where there
    is no ``fcntl`` or the lock file cannot be created."""
    fcntl = _fcntl()
    if fcntl is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return fcntl, os.open(path.with_suffix(".lock"), os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
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
    opened = _lock_fd(path)
    try:
        if opened is not None:
            _acquire(*opened, on_wait)
        yield
    finally:
        if opened is not None:
            os.close(opened[1])  # releases the lock


def _try_exclusive(fcntl: ModuleType, fd: int) -> bool:
    """Take the exclusive lock without waiting: False when another process holds the lock,
    True when taken, or when this file system has no locks (ENOLCK: nobody can hold one)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def _acquire(fcntl: ModuleType, fd: int, on_wait: Callable[[], None] | None) -> None:
    if _try_exclusive(fcntl, fd):
        return
    if on_wait is not None:
        on_wait()
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def shared_use(folder: Path) -> Iterator[None]:
    """Hold a shared lock on ``folder``'s lock file while this process reads or fills the
    cached ``folder``: several processes may use it at once, and none of them deletes it
    from under another (:func:`remove_unless_used`). Degrades to no lock as
    :func:`cache_lock` does."""
    opened = _lock_fd(folder)
    try:
        if opened is not None:
            with contextlib.suppress(OSError):
                opened[0].flock(opened[1], opened[0].LOCK_SH)
        yield
    finally:
        if opened is not None:
            os.close(opened[1])


def remove_unless_used(folder: Path) -> bool:
    """Delete the cached ``folder`` unless another process holds :func:`shared_use` on it
    (two runs may share a cache entry: the same shadow heads, say); returns whether it went.
    The lock file stays (see :func:`cache_lock`). Without ``fcntl`` the folder is deleted."""
    if not folder.exists():
        return True
    opened = _lock_fd(folder)
    if opened is not None and not _try_exclusive(*opened):
        os.close(opened[1])
        return False
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        if opened is not None:
            os.close(opened[1])
    return True
