"""CIFAR-10 from the local "python version" batches; never downloads.

Format (https://www.cs.toronto.edu/~kriz/cifar.html, "Dataset layout"): the folder
``cifar-10-batches-py`` holds ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and
``batches.meta``. Each batch is a pickled dict with ``b"data"``, a 10000×3072 uint8 array
whose rows hold the 1024 red, then green, then blue values of a 32×32 image in row-major
order, and ``b"labels"``, a list of ints in 0..9. ``batches.meta`` has ``b"label_names"``.

Pickles can run arbitrary code when loaded, so batches are read with
:class:`RestrictedUnpickler`, which resolves only the names numpy needs to rebuild arrays.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privlab.data.bundle import DataBundle, DatasetError, make_bundle
from privlab.registry import DATASETS


def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy 2), or ``numpy.core.<submodule>`` on numpy 1.x."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


_multiarray, _numeric = _numpy_core("multiarray"), _numpy_core("numeric")

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle bytes at protocol ≤ 2; latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


#: Every global a CIFAR batch may reference, old (numpy.core, Python 2) and new spellings.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar  # e.g. int64 labels
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}") from None


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (bytes keys, as CIFAR expects).

    A missing, truncated or corrupt file, or one that references any other global, raises
    :class:`DatasetError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "missing: file does not exist")
    raw = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refused"):
            raise DatasetError(path, f"unsafe pickle: {err}") from None
        raise DatasetError(path, f"corrupt or truncated pickle ({err})") from None
    except Exception as err:  # truncated/corrupt pickles raise many different types
        raise DatasetError(
            path, f"corrupt or truncated pickle ({type(err).__name__}: {err})"
        ) from None


def _get(record: dict[Any, Any], key: str) -> Any:
    """``record[b"key"]``, also accepting ``str`` keys (batches re-saved by Python 3)."""
    return record[key.encode()] if key.encode() in record else record.get(key)


def load_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as ``(data, labels)``: data uint8 N×3×32×32, labels int64 N in 0..9."""
    path = Path(path)
    record = safe_unpickle(path)
    if not isinstance(record, dict):
        raise DatasetError(path, f"corrupt batch: expected a dict, found {type(record).__name__}")
    data, labels = _get(record, "data"), _get(record, "labels")
    if data is None or labels is None:
        raise DatasetError(
            path, f"corrupt batch: needs keys b'data' and b'labels', has {list(record)}"
        )
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DatasetError(path, f"wrong data shape {shape}: expected (N, 3072)")
    if data.dtype != np.uint8:
        raise DatasetError(path, f"wrong data dtype {data.dtype}: expected uint8")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DatasetError(path, f"corrupt labels: not a list of integers ({err})") from None
    if len(y) != len(data):
        raise DatasetError(path, f"count mismatch: {len(y)} labels for {len(data)} images")
    bad = np.unique(y[(y < 0) | (y > 9)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise DatasetError(path, f"mislabelled: labels must be in 0..9, found {shown}")
    return data.reshape(-1, 3, 32, 32), y


def load_class_names(folder: Path) -> tuple[str, ...]:
    """``label_names`` from ``batches.meta`` when the file exists, else the standard ten."""
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return CIFAR10_NAMES
    meta = safe_unpickle(meta_path)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list | tuple) or len(names) != 10:
        raise DatasetError(meta_path, "corrupt meta: label_names must list 10 class names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def load_cifar10_folder(
    path: str | Path, split: str = "all"
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Pool the batches of ``split`` ("all", "train", "test"): ``x`` N×3×32×32 in [0, 1]."""
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(folder, "missing: folder does not exist or is not a folder")
    if not (folder / "data_batch_1").exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"  # the folder the official archive unpacks to
    names = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}.get(split, TRAIN_BATCHES + TEST_BATCHES)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            folder,
            f"missing batch files: {', '.join(missing)} "
            f"(expected {', '.join(names)}, optional batches.meta)",
        )
    batches = [load_batch(folder / n) for n in names]
    x = np.concatenate([b[0] for b in batches]).astype(np.float32) / 255.0
    y = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(x), torch.from_numpy(y), load_class_names(folder)


@DATASETS.register("cifar10")
def cifar10(
    *,
    path: str,
    split: str = "all",
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
) -> DataBundle:
    """CIFAR-10 from the local python-version batches in folder ``path``, 3×32×32 in [0, 1]."""
    x, y, class_names = load_cifar10_folder(path, split)
    return make_bundle(
        "cifar10",
        x,
        y,
        num_classes=10,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
        class_names=class_names,
    )
