"""The bundle a config's data section describes (split sizes, dataset parameters, classes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from privlab.data.bundle import DataBundle, restrict_classes
from privlab.registry import DATASETS

if TYPE_CHECKING:
    from privlab.config.base import DataConfig


def bundle_from_config(data: DataConfig, seed: int, where: str = "data") -> DataBundle:
    """Build ``data``'s bundle for ``seed``; a class restriction that does not fit the dataset
    is a ``ConfigError`` naming ``where``.classes."""
    from privlab.config import ConfigError

    split = {
        k: getattr(data, k)
        for k in ("members", "nonmembers", "population")
        if getattr(data, k) is not None
    }
    bundle = DATASETS.build(data.name, seed=seed, **split, **data.params)
    if data.classes is not None:
        try:
            bundle = restrict_classes(bundle, data.classes)
        except ValueError as err:
            raise ConfigError(f"{where}.classes: {err}") from None
    return bundle
