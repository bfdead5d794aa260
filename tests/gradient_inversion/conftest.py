"""Gradient-inversion tests: one torch thread (the ops are tiny) and the digits data."""

from __future__ import annotations

import pytest
import torch

from privlab.data.bundle import DataBundle
from privlab.registry import DATASETS


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    """scikit-learn's 8×8 digits in [0, 1] (members are in shuffled class order)."""
    return DATASETS.build("digits", seed=0)
