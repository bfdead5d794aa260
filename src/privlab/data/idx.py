"""MNIST and Fashion-MNIST from local IDX files (plain or gzip); never downloads.

IDX format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"):
a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then the values in C order, big-endian. Type codes: 0x08 ubyte,
0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. MNIST images are
``ubyte`` N×28×28 (``idx3``) and labels ``ubyte`` N (``idx1``).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from privlab.data.bundle import DataBundle, DatasetError, make_bundle
from privlab.registry import DATASETS

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four standard file names (without ``.gz``), keyed by split.
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``."""
    if not path.is_file():
        raise DatasetError(path, "missing: file does not exist")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise DatasetError(path, f"corrupt gzip file ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` is decompressed) into an array of its native shape.

    Raises :class:`DatasetError` for a bad magic number, an unknown type code, or a byte
    count that disagrees with the header (truncated or with trailing bytes).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(path, f"truncated: {len(raw)} bytes, too short for the IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(
            path, f"bad magic number 0x{raw[:4].hex()}: IDX files start with two zero bytes"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(
            path, f"wrong dtype code 0x{code:02X} in the magic number (known: {known})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            path, f"truncated header: expected {header} bytes for {ndim} dims, found {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) < expected:
        raise DatasetError(
            path, f"truncated: header {dims} needs {expected} bytes, found {len(raw)}"
        )
    if len(raw) > expected:
        raise DatasetError(
            path,
            f"size mismatch: header {dims} needs {expected} bytes, "
            f"found {len(raw)} (trailing data)",
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _expect_ubyte(path: Path, array: np.ndarray, ndim: int, what: str) -> None:
    if array.dtype != np.uint8:
        raise DatasetError(
            path, f"wrong dtype code: {what} must be unsigned bytes (0x08), found {array.dtype}"
        )
    if array.ndim != ndim:
        raise DatasetError(path, f"{what} must have {ndim} dimension(s), found shape {array.shape}")


def load_idx_pair(
    images_path: str | Path, labels_path: str | Path, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an images/labels IDX pair: ``x`` float32 N×1×H×W in [0, 1], ``y`` int64 N."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path)
    _expect_ubyte(images_path, images, 3, "images")
    labels = read_idx(labels_path)
    _expect_ubyte(labels_path, labels, 1, "labels")
    if len(images) != len(labels):
        raise DatasetError(
            labels_path,
            f"count mismatch: {len(labels)} labels but {images_path.name} has {len(images)} images",
        )
    bad = np.unique(labels[labels >= num_classes])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise DatasetError(
            labels_path, f"mislabelled: labels must be in 0..{num_classes - 1}, found {shown}"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _find(folder: Path, stem: str) -> Path:
    """The file for ``stem`` in ``folder``: plain, ``.gz``, or the ``.idx3-`` spelling."""
    variants = [stem, stem.replace("-idx", ".idx")]
    for name in variants:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    expected = ", ".join(f"{a}[.gz]" for pair in SPLIT_FILES.values() for a in pair)
    raise DatasetError(
        folder / stem,
        f"missing: no {stem} or {stem}.gz in folder {folder} (expected files: {expected})",
    )


def load_idx_folder(path: str | Path, split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """Pool the IDX pairs of ``split`` ("all", "train" or "test") found in folder ``path``."""
    folder = Path(path)
    if split not in ("all", *SPLIT_FILES):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    if not folder.is_dir():
        raise DatasetError(folder, "missing: folder does not exist or is not a folder")
    parts = [p for p in SPLIT_FILES if split in ("all", p)]
    pairs = []
    for part in parts:
        images_name, labels_name = SPLIT_FILES[part]
        pairs.append(load_idx_pair(_find(folder, images_name), _find(folder, labels_name)))
    x = torch.cat([x for x, _ in pairs])
    y = torch.cat([y for _, y in pairs])
    shapes = {tuple(x.shape[1:]) for x, _ in pairs}
    if len(shapes) > 1:
        raise DatasetError(folder, f"size mismatch: train and test images differ {shapes}")
    return x, y


def _idx_bundle(
    name: str,
    class_names: tuple[str, ...],
    path: str,
    split: str,
    seed: int,
    members: float,
    nonmembers: float,
    population: float | None,
) -> DataBundle:
    x, y = load_idx_folder(path, split)
    return make_bundle(
        name,
        x,
        y,
        num_classes=10,
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
        class_names=class_names,
    )


@DATASETS.register("mnist_idx")
def mnist_idx(
    *,
    path: str,
    split: str = "all",
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
) -> DataBundle:
    """MNIST from the four local IDX files in folder ``path`` (plain or .gz), 28×28 in [0, 1]."""
    return _idx_bundle("mnist_idx", DIGIT_NAMES, path, split, seed, members, nonmembers, population)


@DATASETS.register("fashion_mnist_idx")
def fashion_mnist_idx(
    *,
    path: str,
    split: str = "all",
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
) -> DataBundle:
    """Fashion-MNIST from the four local IDX files in folder ``path`` (plain or .gz)."""
    return _idx_bundle(
        "fashion_mnist_idx", FASHION_NAMES, path, split, seed, members, nonmembers, population
    )
