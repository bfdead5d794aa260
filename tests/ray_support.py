"""Ray is an optional extra (`make ray`, requirements-ray.lock): its tests skip without it,
except where ``PRIVLAB_REQUIRE_RAY`` is set (CI installs it), where its absence fails them."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRED = bool(os.environ.get("PRIVLAB_REQUIRE_RAY"))


def require_ray() -> ModuleType:
    """The ``ray`` module, or a skip (a failure where Ray is required)."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        if REQUIRED:
            pytest.fail("PRIVLAB_REQUIRE_RAY is set but Ray is not installed (make ray)")
        pytest.skip("Ray is an optional extra: make ray")
