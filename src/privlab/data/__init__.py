"""Datasets: embedded defaults and loaders for standard on-disk formats."""

from privlab.data import (  # noqa: F401  (register datasets)
    cifar,
    embedded,
    idx,
    image_folder,
    paper_data,
    user_files,
)
from privlab.data.bundle import DataBundle, DatasetError, Split, make_bundle, stratified_split

__all__ = ["DataBundle", "DatasetError", "Split", "make_bundle", "stratified_split"]
