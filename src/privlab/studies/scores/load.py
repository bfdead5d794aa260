"""Read a precomputed-scores file and turn its values into membership scores.

A membership score is higher for a more likely member: a score as given (or negated when
``higher_is_member`` is false), a loss negated, logits or probabilities turned into the
logit-scaled confidence of the true class, ``log p_y - log(1 - p_y)`` (LiRA's statistic).
Every problem with the file is one :class:`ScoresFileError` that names it.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from privlab.studies.scores.config import ScoresConfig

MEMBER_COLUMN = "is_member"
DEFAULT_LABEL_COLUMN = "label"


class ScoresFileError(ValueError):
    """The scores file is missing, unreadable or its contents do not fit the section."""


@dataclass(frozen=True)
class RawScores:
    """The file's values as read: per-example values (1-d) or class values (2-d), labels."""

    members: np.ndarray
    nonmembers: np.ndarray
    members_labels: np.ndarray | None = None
    nonmembers_labels: np.ndarray | None = None


@dataclass(frozen=True)
class MembershipScores:
    """Membership scores (higher = member) of both classes and where they came from."""

    members: np.ndarray
    nonmembers: np.ndarray
    sha256: str
    format: str


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_scores(cfg: ScoresConfig) -> MembershipScores:
    """The section's file read, checked and converted (a ScoresFileError naming it)."""
    path = Path(cfg.file)
    if not path.is_file():
        raise ScoresFileError(f"{path}: scores file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raw = read_npz(path)
    elif suffix == ".csv":
        raw = read_csv(path, cfg)
    else:
        raise ScoresFileError(f"{path}: expected a .npz or .csv scores file, got {suffix!r}")
    try:
        members = to_membership(raw.members, raw.members_labels, cfg, "members")
        nonmembers = to_membership(raw.nonmembers, raw.nonmembers_labels, cfg, "nonmembers")
    except ValueError as err:
        raise ScoresFileError(f"{path}: {err}") from None
    return MembershipScores(members, nonmembers, file_sha256(path), suffix[1:])


# ------------------------------------------------------------------ reading


def read_npz(path: Path) -> RawScores:
    """Arrays ``members`` / ``nonmembers`` and, for 2-d values, their ``*_labels``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ScoresFileError(f"{path}: not a readable .npz file ({err})") from None
    missing = [name for name in ("members", "nonmembers") if name not in arrays]
    if missing:
        have = ", ".join(sorted(arrays)) or "none"
        raise ScoresFileError(f"{path}: missing array(s) {', '.join(missing)} (it has: {have})")
    return RawScores(
        arrays["members"],
        arrays["nonmembers"],
        arrays.get("members_labels"),
        arrays.get("nonmembers_labels"),
    )


def _float(text: str | None, path: Path, line: int, column: str) -> float:
    try:
        return float(text if text is not None else "")
    except ValueError:
        raise ScoresFileError(
            f"{path}: line {line}, column {column!r}: not a number ({text!r})"
        ) from None


def _csv_columns(fields: list[str], cfg: ScoresConfig, path: Path) -> tuple[list[str], str | None]:
    """The value columns and the label column a CSV of this kind must have."""
    if MEMBER_COLUMN not in fields:
        raise ScoresFileError(f"{path}: no {MEMBER_COLUMN!r} column (0/1); it has {fields}")
    if cfg.kind in ("score", "loss"):
        if cfg.kind not in fields:
            other = "loss" if cfg.kind == "score" else "score"
            hint = f" (it has {other!r}: set kind: {other})" if other in fields else ""
            raise ScoresFileError(f"{path}: no {cfg.kind!r} column{hint}; it has {fields}")
        return [cfg.kind], None
    label = cfg.label_column or DEFAULT_LABEL_COLUMN
    if label not in fields:
        raise ScoresFileError(
            f"{path}: no label column {label!r} (the true class of each row); set label_column"
        )
    values = [f for f in fields if f not in (MEMBER_COLUMN, label)]
    return values, label


def read_csv(path: Path, cfg: ScoresConfig) -> RawScores:
    """Rows with ``is_member`` (0/1) and a value column, or class columns and the label."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns, label = _csv_columns(list(reader.fieldnames or []), cfg, path)
            rows = list(enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ScoresFileError(f"{path}: not a readable CSV file ({err})") from None
    member, values, labels = [], [], []
    for line, row in rows:
        flag = _float(row.get(MEMBER_COLUMN), path, line, MEMBER_COLUMN)
        if flag not in (0.0, 1.0):
            raise ScoresFileError(f"{path}: line {line}: {MEMBER_COLUMN} must be 0 or 1")
        member.append(flag == 1.0)
        values.append([_float(row.get(c), path, line, c) for c in columns])
        if label is not None:
            labels.append(_float(row.get(label), path, line, label))
    is_member = np.asarray(member, dtype=bool)
    table = np.asarray(values, dtype=np.float64).reshape(len(rows), len(columns))
    if label is None:
        return RawScores(table[is_member, 0], table[~is_member, 0])
    classes = np.asarray(labels, dtype=np.float64)
    return RawScores(table[is_member], table[~is_member], classes[is_member], classes[~is_member])


# ------------------------------------------------------------------ converting


def _class_labels(labels: np.ndarray | None, n: int, k: int, name: str) -> np.ndarray:
    if labels is None:
        raise ValueError(f"2-d {name} need {name}_labels (the true class of each row)")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name}_labels must be 1-d with {n} entries, got shape {labels.shape}")
    if labels.dtype.kind not in "iuf" or not np.all(np.isfinite(labels)):
        raise ValueError(f"{name}_labels must be class indices")
    if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels < k)):
        raise ValueError(f"{name}_labels must be class indices in [0, {k})")
    return labels.astype(np.int64)


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` of softmax(logits), computed stably as the true class's
    logit minus the log-sum-exp of the other classes' logits."""
    rows = np.arange(logits.shape[0])
    others = logits.copy()
    others[rows, labels] = -np.inf
    return np.asarray(logits[rows, labels] - logsumexp(others, axis=1), dtype=np.float64)


def prob_confidence(p_true: np.ndarray, p_rest: np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` from probabilities (1 - p_y as the other classes' mass when
    known); zero probabilities are clipped to the smallest positive float, so it stays finite."""
    tiny = np.finfo(np.float64).tiny
    return np.asarray(np.log(np.maximum(p_true, tiny)) - np.log(np.maximum(p_rest, tiny)))


def _probs(values: np.ndarray, labels: np.ndarray | None, name: str) -> np.ndarray:
    if values.ndim not in (1, 2):
        raise ValueError(f"{name}: probabilities must be 1-d (true class) or 2-d (all classes)")
    if np.any((values < 0) | (values > 1)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    if values.ndim == 1:
        return prob_confidence(values, 1.0 - values)
    y = _class_labels(labels, values.shape[0], values.shape[1], name)
    rows = np.arange(values.shape[0])
    rest = values.sum(axis=1) - values[rows, y]
    return prob_confidence(values[rows, y], rest)


def to_membership(
    values: np.ndarray, labels: np.ndarray | None, cfg: ScoresConfig, name: str
) -> np.ndarray:
    """One side's raw values as membership scores (1-d, finite, higher = member)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"{name}: no examples (both members and non-members are needed)")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(values)))} NaN or infinite values")
    if cfg.kind in ("score", "loss"):
        if values.ndim != 1:
            raise ValueError(f"{name}: kind {cfg.kind} needs 1-d values, got shape {values.shape}")
        return values if cfg.higher_means_member else -values
    if cfg.kind == "probs":
        return _probs(values, labels, name)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"{name}: logits must be 2-d (examples x classes, at least 2)")
    y = _class_labels(labels, values.shape[0], values.shape[1], name)
    return logit_confidence(values, y)
