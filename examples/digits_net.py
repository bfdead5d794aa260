"""The model of the CLI example: ``privlab audit --model examples/digits_net.py:Net``.

``Net`` is any callable that returns the ``nn.Module`` (privlab imports this file because you
name it; the weights come from ``--weights``). With a training recipe (``--train``), privlab
calls it again for fresh reference models of the same architecture.
"""

from __future__ import annotations

from torch import nn


def Net() -> nn.Module:
    """A small CNN for 8x8 grey digits in [0, 1], shape (1, 8, 8); 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
