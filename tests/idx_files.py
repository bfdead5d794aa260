"""IDX files written by hand for the loader tests (the MNIST file format, tiny images whose
first pixel is their global index, so a test can tell which images a split holds)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

SIDE = 4
N_TRAIN, N_TEST = 30, 20
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray, code: int = 0x08, magic: bytes | None = None) -> bytes:
    """An IDX file by hand: ``00 00 code ndim``, big-endian uint32 dims, big-endian data."""
    head = magic if magic is not None else struct.pack(">BBBB", 0, 0, code, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return head + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def numbered_images(start: int, n: int) -> np.ndarray:
    """uint8 n×SIDE×SIDE images whose first pixel is their global index (an id)."""
    pix = (np.arange(n)[:, None] * 3 + np.arange(SIDE * SIDE)[None]) % 256
    images = pix.reshape(n, SIDE, SIDE).astype(np.uint8)
    images[:, 0, 0] = np.arange(start, start + n)
    return images


def make_idx_folder(root: Path, gz: bool = False, splits: tuple[str, ...] = ("train", "test")):
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    start = 0
    for split in splits:
        n = N_TRAIN if split == "train" else N_TEST
        images_name, labels_name = IDX_NAMES[split]
        write(root / f"{images_name}{ext}", idx_bytes(numbered_images(start, n)))
        labels = (np.arange(start, start + n) % 10).astype(np.uint8)
        write(root / f"{labels_name}{ext}", idx_bytes(labels))
        start += n
    return root


def ids(x: torch.Tensor) -> set[int]:
    return set(torch.round(x[:, 0, 0, 0] * 255).long().tolist())
