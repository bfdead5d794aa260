"""Labelled images from a local folder with one sub-folder per class; never downloads.

Layout (the torchvision ``ImageFolder`` convention, used for Yale Faces or CelebA crops)::

    path/
        alice/  001.png  002.png ...
        bob/    001.png ...

Class indices follow the sorted sub-folder names. Images are read with Pillow, converted
to ``"L"`` or ``"RGB"`` and optionally resized to ``size``×``size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from privlab.data.bundle import DataBundle, DatasetError, make_bundle
from privlab.registry import DATASETS

DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".gif")


def find_classes(
    root: Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS
) -> list[tuple[str, list[Path]]]:
    """``(class name, sorted image files)`` for each sub-folder of ``root``, sorted by name.

    Hidden entries (names starting with ".") are skipped; an empty ``extensions`` accepts
    every file. Raises :class:`DatasetError` for a missing root, no or fewer than two class
    folders, or a class folder without images.
    """
    if not root.exists():
        raise DatasetError(root, "missing: folder does not exist")
    if not root.is_dir():
        raise DatasetError(root, "not a folder: expected a folder with one sub-folder per class")
    exts = {e.lower() for e in extensions}
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.name,
    )
    if not class_dirs:
        raise DatasetError(root, "no class sub-folders: expected one sub-folder per class")
    if len(class_dirs) < 2:
        raise DatasetError(
            root, f"only 1 class sub-folder ({class_dirs[0].name!r}); need at least 2 classes"
        )
    classes = []
    for d in class_dirs:
        files = sorted(
            f
            for f in d.iterdir()
            if f.is_file() and not f.name.startswith(".") and (not exts or f.suffix.lower() in exts)
        )
        if not files:
            wanted = ", ".join(sorted(exts)) or "any"
            raise DatasetError(d, f"empty class folder {d.name!r}: no images ({wanted})")
        classes.append((d.name, files))
    return classes


def load_image(path: Path, *, grayscale: bool = True, size: int | None = None) -> np.ndarray:
    """One image as uint8 C×H×W (C = 1 for grayscale, 3 for RGB), resized when ``size``."""
    try:
        with Image.open(path) as raw:
            raw.load()
            img = raw.convert("L" if grayscale else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DatasetError(path, f"corrupt or unreadable image ({err})") from None
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(
    path: str | Path,
    *,
    size: int | None = None,
    grayscale: bool = True,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Every image under ``path``: ``x`` float32 N×C×H×W in [0, 1], ``y`` int64, class names.

    Without ``size`` all images must share one size; the first that differs is named.
    """
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    classes = find_classes(Path(path), extensions)
    images: list[np.ndarray] = []
    labels: list[int] = []
    first: Path | None = None
    for label, (_, files) in enumerate(classes):
        for f in files:
            arr = load_image(f, grayscale=grayscale, size=size)
            if first is None:
                first = f
            elif arr.shape != images[0].shape:
                h0, w0 = images[0].shape[1:]
                h, w = arr.shape[1:]
                raise DatasetError(
                    f,
                    f"size mismatch: image is {w}×{h} but {first.name} is {w0}×{h0}; "
                    "pass size= to resize all images",
                )
            images.append(arr)
            labels.append(label)
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)
    y = torch.tensor(labels, dtype=torch.long)
    return x, y, tuple(name for name, _ in classes)


@DATASETS.register("image_folder")
def image_folder(
    *,
    path: str,
    size: int | None = None,
    grayscale: bool = True,
    seed: int = 0,
    members: float = 1 / 3,
    nonmembers: float = 1 / 3,
    population: float | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> DataBundle:
    """Local images with one sub-folder per class (Yale Faces, CelebA crops), in [0, 1]."""
    x, y, class_names = load_image_folder(
        path, size=size, grayscale=grayscale, extensions=extensions
    )
    return make_bundle(
        "image_folder",
        x,
        y,
        num_classes=len(class_names),
        seed=seed,
        members=members,
        nonmembers=nonmembers,
        population=population,
        class_names=class_names,
    )
