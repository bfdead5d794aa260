"""The user's own data as a dataset: members, non-members and (optionally) the attacker's
population from files (``.npz``, a tensor dict, an image folder or a CSV), for auditing a
model privlab did not train (:mod:`privlab.auditing`)."""

from __future__ import annotations

import torch

from privlab.data.bundle import DataBundle, DatasetError, Split
from privlab.registry import DATASETS


def _empty_like(split: Split) -> Split:
    return Split(split.x[:0].clone(), split.y[:0].clone())


def _feature_names(
    paths: list[str], names_of: list[tuple[str, ...] | None]
) -> tuple[str, ...] | None:
    """The feature columns' names of the files that have them (CSV headers, label column left
    out), which must agree; None when no file names its columns."""
    named = [(p, names) for p, names in zip(paths, names_of, strict=True) if names is not None]
    for path, names in named[1:]:
        first, expected = named[0]
        if names != expected:
            raise DatasetError(
                path,
                f"its feature columns {', '.join(names)} differ from {first}'s "
                f"({', '.join(expected)})",
            )
    return named[0][1] if named else None


@DATASETS.register("user_files")
def user_files(
    *,
    members: str,
    nonmembers: str,
    population: str | None = None,
    label_column: str | None = None,
    value_range: tuple[float, float] | None = None,
    num_classes: int | None = None,
    feature_names: list[str] | None = None,
    seed: int = 0,
) -> DataBundle:
    """The user's members, non-members and optional population files, as given (no split):
    the training data of an audited model, held-out data, and the attacker's own data. The
    bundle's ``feature_names`` are ``feature_names`` (one per column of 1-D inputs) or the CSV
    header's (every column but ``label_column``)."""
    from privlab.auditing.data_loading import load_user_data

    del seed  # the user's splits are fixed: nothing is drawn
    paths = [p for p in (members, nonmembers, population) if p]
    loaded = [load_user_data(p, label_column=label_column) for p in paths]
    splits: list[Split] = [*loaded, _empty_like(loaded[0])][:3]
    shapes = {tuple(s.x.shape[1:]) for s in splits if len(s)}
    if len(shapes) > 1:
        raise DatasetError(members, f"the files' inputs have different shapes: {sorted(shapes)}")
    classes = int(max(int(s.y.max()) for s in splits if len(s))) + 1
    names = _feature_names(paths, [s.feature_names for s in loaded])
    if feature_names is not None:
        if splits[0].x.dim() != 2 or len(feature_names) != splits[0].x.shape[1]:
            raise DatasetError(
                members,
                f"{len(feature_names)} feature names for inputs of shape "
                f"{tuple(splits[0].x.shape[1:])} (one name per column of 1-D inputs)",
            )
        names = tuple(str(n) for n in feature_names)
    if value_range is None:
        xs = torch.cat([s.x.flatten() for s in splits if len(s)])
        value_range = (float(xs.min()), float(xs.max()))
    return DataBundle(
        name="user_files",
        members=splits[0],
        nonmembers=splits[1],
        population=splits[2],
        num_classes=num_classes or classes,
        input_shape=tuple(splits[0].x.shape[1:]),
        value_range=(float(value_range[0]), float(value_range[1])),
        feature_names=names,
    )
