"""Tabular data: one-hot encoding, standardisation, and the Adult census files shipped in
privlab (``files/adult/``, the UCI originals xz-compressed; attribution in its README.md)."""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from privlab.data.bundle import DatasetError

#: the 14 attributes and the label, in file order; True marks a categorical attribute
ADULT_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("age", False),
    ("workclass", True),
    ("fnlwgt", False),
    ("education", True),
    ("education-num", False),
    ("marital-status", True),
    ("occupation", True),
    ("relationship", True),
    ("race", True),
    ("sex", True),
    ("capital-gain", False),
    ("capital-loss", False),
    ("hours-per-week", False),
    ("native-country", True),
)
ADULT_CLASSES = ("<=50K", ">50K")
#: file name → (rows, SHA-256 of the uncompressed UCI original)
ADULT_FILES = {
    "adult.data": (32_561, "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
    "adult.test": (16_281, "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"),
}


@dataclass(frozen=True)
class Table:
    """Encoded rows: ``x`` float32 (n, d), ``y`` int64 (n,), the name of each of the d columns
    (``age`` for a standardised attribute, ``workclass=Private`` for a one-hot column)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]


def one_hot(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """0/1 float columns, one per distinct value (sorted), and those values."""
    categories, codes = np.unique(np.asarray(values), return_inverse=True)
    return np.eye(len(categories))[codes], [str(c) for c in categories]


def standardise(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit (population) standard deviation; a constant column becomes zeros."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)


def encode(
    columns: Sequence[Sequence[str]], names: Sequence[str], categorical: Sequence[bool]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Standardised numeric attributes first (in order), then each categorical one one-hot.

    The statistics (means, deviations, categories) are those of the rows given.
    """
    cols = list(zip(columns, names, categorical, strict=True))
    numeric = [(col, name) for col, name, cat in cols if not cat]
    blocks = [np.stack([standardise(np.asarray(c)) for c, _ in numeric], axis=1)] if numeric else []
    feature_names = [name for _, name in numeric]
    for col, name, cat in cols:
        if cat:
            block, categories = one_hot(col)
            blocks.append(block)
            feature_names += [f"{name}={c}" for c in categories]
    return np.concatenate(blocks, axis=1).astype(np.float32), tuple(feature_names)


def decode_record(row: Sequence[float], feature_names: Sequence[str]) -> dict[str, str | float]:
    """One encoded row as attribute → value, the inverse of :func:`encode` for reading: a
    one-hot group (two or more ``name=value`` columns) becomes ``name: value`` (the column that
    is 1, or the largest), any other column keeps its name and its value, rounded to 4
    significant digits (standardised attributes stay standardised). Attributes come in the
    order of their first column."""
    if len(row) != len(feature_names):
        raise ValueError(f"{len(row)} values but {len(feature_names)} feature names")
    groups: dict[str, list[tuple[str, float]]] = {}
    for name, value in zip(feature_names, row, strict=True):
        attribute, _, category = name.partition("=")
        groups.setdefault(attribute if category else name, []).append((name, float(value)))
    out: dict[str, str | float] = {}
    for attribute, columns in groups.items():
        if len(columns) > 1 and all("=" in name for name, _ in columns):
            hot = max(columns, key=lambda column: column[1])[0]
            out[attribute] = hot.partition("=")[2]
        else:
            out.update((name, float(f"{value:.4g}")) for name, value in columns)
    return out


def _read_adult_file(name: str) -> list[list[str]]:
    """The rows of one UCI file (15 stripped fields each), checked against its hash and size."""
    path = resources.files("privlab.data").joinpath("files", "adult", f"{name}.xz")
    rows_expected, sha = ADULT_FILES[name]
    try:
        with path.open("rb") as raw, lzma.open(raw) as f:
            data = f.read()
    except (OSError, lzma.LZMAError) as err:
        raise DatasetError(path, f"cannot read the compressed Adult file ({err})") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise DatasetError(path, "content differs from the UCI original (SHA-256 mismatch)")
    lines = data.decode("ascii").splitlines()
    rows = [[f.strip() for f in ln.split(",")] for ln in lines if ln and not ln.startswith("|")]
    if len(rows) != rows_expected or any(len(r) != len(ADULT_COLUMNS) + 1 for r in rows):
        raise DatasetError(
            path, f"expected {rows_expected} rows of {len(ADULT_COLUMNS) + 1} fields"
        )
    return rows


@lru_cache(maxsize=2)
def adult_table(drop_missing: bool = False) -> Table:
    """All 48,842 Adult rows (32,561 of adult.data, then 16,281 of adult.test), encoded.

    Label 1 is income >50K (the test file's trailing "." dropped). The six numeric attributes
    are standardised and the eight categorical ones one-hot encoded with statistics fitted on
    the whole data (every row, whatever split it later falls in). A missing value ("?", in
    workclass, occupation and native-country) is a category of its own, unless
    ``drop_missing`` removes those rows (45,222 remain). The arrays are read-only.
    """
    rows = _read_adult_file("adult.data") + _read_adult_file("adult.test")
    if drop_missing:
        rows = [r for r in rows if "?" not in r]
    labels = [r[-1].rstrip(".") for r in rows]
    if set(labels) - set(ADULT_CLASSES):
        raise DatasetError("adult", f"unexpected labels {sorted(set(labels) - set(ADULT_CLASSES))}")
    names, categorical = zip(*ADULT_COLUMNS, strict=True)
    columns = [[r[j] for r in rows] for j in range(len(ADULT_COLUMNS))]
    x, feature_names = encode(columns, names, categorical)
    y = np.asarray([ADULT_CLASSES.index(v) for v in labels], dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return Table(x=x, y=y, feature_names=feature_names)
