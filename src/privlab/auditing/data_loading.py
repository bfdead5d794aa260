"""Load the examples a user audits (members, non-members, population) from their own files.

Formats, chosen by the path: a folder is an image folder (one sub-folder per class, read by
:mod:`privlab.data.image_folder`: values in [0, 1], grayscale when every image is, else RGB);
``.npz`` holds arrays ``x`` and ``y`` (no pickled object arrays); ``.pt`` / ``.pth`` is a
tensor dict ``{"x": ..., "y": ...}`` loaded with ``weights_only=True``; ``.csv`` has a header
row and a ``label_column``. CSV features must already be numbers: a non-numeric feature column
is an error naming it, not one-hot encoded here, because the audit must feed the model the
encoding it was trained on, which only the user knows.

Every file gives a :class:`UserSplit` (a :class:`~privlab.data.bundle.Split` with ``x``
float32 (N×…) and ``y`` int64 (N,), and a CSV's feature column names); every problem is one
:class:`AuditInputError` naming the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from privlab.auditing.errors import AuditInputError, describe
from privlab.auditing.model_loading import torch_load_safely
from privlab.data.bundle import DatasetError, Split
from privlab.data.image_folder import find_classes, load_image_folder

#: Pillow modes read as one channel; any other mode makes the folder RGB
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_FORMATS = ".npz, .pt / .pth (a tensor dict with x and y), .csv, or an image folder"


@dataclass(frozen=True)
class UserSplit(Split):
    """A user's file as a Split, with the names of its feature columns when it has them (a
    CSV's header, the label column left out; None for the other formats)."""

    feature_names: tuple[str, ...] | None = None


def load_user_data(path: str | Path, *, label_column: str | None = None) -> UserSplit:
    """The labelled examples in ``path`` (format by suffix, a folder being an image folder).

    Checks: the file exists and is readable in its format; ``x`` and ``y`` are present,
    numeric, non-empty and of equal length; ``x`` has a batch dimension and ``y`` is one
    integer class index per row. ``label_column`` names a CSV's label column (required for
    CSV, ignored otherwise); a CSV's other column names are the result's ``feature_names``.
    """
    path = Path(path)
    if not path.exists():
        raise AuditInputError(path, "data file not found")
    x: object
    y: object
    names = None
    if path.is_dir():
        x, y = _read_image_folder(path)
    elif path.suffix.lower() == ".npz":
        x, y = _read_npz(path)
    elif path.suffix.lower() in (".pt", ".pth"):
        x, y = _read_tensor_dict(path)
    elif path.suffix.lower() == ".csv":
        x, y, names = _read_csv(path, label_column)
    else:
        raise AuditInputError(path, f"unsupported data file; expected {_FORMATS}")
    split = as_split(x, y, path)
    return UserSplit(split.x, split.y, feature_names=names)


def as_split(x: object, y: object, where: object) -> Split:
    """``(x, y)`` (arrays or tensors) as a float32 / int64 Split, checking what every format
    shares: numeric dtypes, x with a batch dimension, y one integral label per row, equal
    non-zero lengths."""
    xt = _as_tensor(x, "x", where)
    yt = _as_tensor(y, "y", where)
    if xt.dtype.is_complex or xt.dtype == torch.bool:
        raise AuditInputError(where, f"x has dtype {xt.dtype}; expected real numbers")
    if xt.ndim < 2:
        raise AuditInputError(
            where, f"x has shape {tuple(xt.shape)}; expected N×features or N×C×H×W"
        )
    if yt.ndim != 1:
        raise AuditInputError(
            where,
            f"y has shape {tuple(yt.shape)}; expected one class index per row "
            "(for one-hot labels, store their argmax)",
        )
    if len(xt) != len(yt):
        raise AuditInputError(where, f"x has {len(xt)} rows but y has {len(yt)}")
    if len(yt) == 0:
        raise AuditInputError(where, "no examples (x and y are empty)")
    return Split(xt.float().contiguous(), _as_labels(yt, where))


def _as_tensor(value: object, name: str, where: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise AuditInputError(where, f"{name} has dtype {value.dtype}; expected numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise AuditInputError(
        where, f"{name} is of type {type(value).__name__}, not an array or tensor"
    )


def _as_labels(y: torch.Tensor, where: object) -> torch.Tensor:
    """Integer class indices as int64; float labels only when every one is a whole number."""
    if y.dtype == torch.bool or y.dtype.is_complex:
        raise AuditInputError(where, f"y has dtype {y.dtype}; expected integer class indices")
    if y.is_floating_point():
        fractional = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(fractional.any()):
            value = y[fractional][0].item()
            raise AuditInputError(
                where, f"y holds {value!r}, not a class index; expected integer labels"
            )
    return y.to(torch.int64).contiguous()


# ---------------------------------------------------------------- formats


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of an ``.npz`` (``allow_pickle=False``: no object arrays)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:  # a pickle, not a zip, truncated
        raise AuditInputError(path, f"unreadable .npz file ({describe(err)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise AuditInputError(path, "not an .npz archive of named arrays (x and y)")
    with loaded:
        missing = [k for k in ("x", "y") if k not in loaded.files]
        if missing:
            found = ", ".join(loaded.files) or "none"
            raise AuditInputError(path, f"no array {' or '.join(missing)} (arrays found: {found})")
        try:
            return loaded["x"], loaded["y"]
        except Exception as err:  # object arrays (pickles), truncated members
            raise AuditInputError(path, f"unreadable .npz file ({describe(err)})") from None


def _read_tensor_dict(path: Path) -> tuple[object, object]:
    """``x`` and ``y`` of a torch-saved dict, loaded with ``weights_only=True``."""
    obj = torch_load_safely(path, "data")
    if not isinstance(obj, dict):
        raise AuditInputError(
            path, f"expected a dict with tensors x and y, got {type(obj).__name__}"
        )
    missing = [k for k in ("x", "y") if k not in obj]
    if missing:
        found = ", ".join(map(repr, obj)) or "none"
        raise AuditInputError(path, f"no key {' or '.join(missing)} (keys found: {found})")
    return obj["x"], obj["y"]


def _read_image_folder(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1], labels by sorted class sub-folder; grayscale when every image is."""
    try:
        classes = find_classes(path)
        gray = all(_image_mode(f) in _GRAY_MODES for _, files in classes for f in files)
        x, y, _ = load_image_folder(path, grayscale=gray)
    except DatasetError as err:
        raise AuditInputError(err.path, err.problem) from None
    return x, y


def _image_mode(path: Path) -> str:
    """The Pillow mode of an image, from its header only."""
    try:
        with Image.open(path) as img:
            return str(img.mode)
    except (OSError, SyntaxError, ValueError) as err:
        raise AuditInputError(path, f"corrupt or unreadable image ({describe(err)})") from None


def _read_csv(
    path: Path, label_column: str | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Numeric feature columns (float32), the label column and the feature columns' names of
    a CSV with a header row."""
    if label_column is None:
        raise AuditInputError(path, "a CSV needs label_column (the name of its label column)")
    header, rows = _csv_rows(path)
    if label_column not in header:
        shown = ", ".join(header[:12]) + (" …" if len(header) > 12 else "")
        raise AuditInputError(path, f"no column {label_column!r} (columns: {shown})")
    if len(header) < 2:
        raise AuditInputError(path, "no feature columns besides the label column")
    table = np.array(rows, dtype=str).reshape(len(rows), len(header))
    label_at = header.index(label_column)
    features = [j for j in range(len(header)) if j != label_at]
    bad = [j for j in features if _first_non_number(table[:, j]) is not None]
    if bad:
        row, value = _first_non_number(table[:, bad[0]]) or (0, "")
        names = ", ".join(repr(header[j]) for j in bad)
        raise AuditInputError(
            path,
            f"non-numeric feature column{'s' * (len(bad) > 1)} {names} (first: {value!r} in "
            f"data row {row}); encode them as numbers the way the model was trained",
        )
    found = _first_non_number(table[:, label_at])
    if found is not None:
        raise AuditInputError(
            path,
            f"label column {label_column!r} holds {found[1]!r} (data row {found[0]}); "
            "expected integer class indices",
        )
    x = table[:, features].astype(np.float64).astype(np.float32)
    return x, table[:, label_at].astype(np.float64), tuple(header[j] for j in features)


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the non-blank data rows of a CSV, all as long as the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AuditInputError(path, f"unreadable CSV file ({describe(err)})") from None
    if not rows:
        raise AuditInputError(path, "empty CSV file (no header row)")
    header = [name.strip() for name in rows[0]]
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise AuditInputError(
                path, f"data row {i} has {len(row)} fields but the header has {len(header)}"
            )
    return header, rows[1:]


def _first_non_number(column: np.ndarray) -> tuple[int, str] | None:
    """(1-based data row, value) of the first cell that is not a number, or None."""
    try:
        column.astype(np.float64)
        return None
    except ValueError:
        pass
    for i, value in enumerate(column, start=1):
        try:
            float(value)
        except ValueError:
            return i, str(value)
    return None
