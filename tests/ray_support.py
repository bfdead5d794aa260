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


#: a small gradient-inversion sweep, run on both backends by the Ray tests
GI_SWEEP = {
    "data": "digits",
    "model": {"name": "mlp", "params": {"hidden": [16]}},
    "clients": [{"batch_size": 2}],
    "batches": 1,
    "examples": 1,
    "attacks": [{"name": "inverting_gradients", "params": {"iterations": 30, "restarts": 1}}],
    "defences": ["none", {"name": "pruning", "sweep": {"p": [0.5, 0.9]}}],
    "utility": {"clients": 2, "rounds": 3},
}


def untimed(obj: object) -> object:
    """A report's block without its wall times, which differ from run to run."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj
