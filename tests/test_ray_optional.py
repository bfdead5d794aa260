"""Ray stays optional: the default lock does not install it, the `ray` extra's lock pins it,
and asking for the Ray backend without it is one clear error that says how to install it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from privlab.studies.reconstruction.shadow_heads import ShadowJob, generate_shadow_heads
from privlab.training.heads import HeadSpec

ROOT = Path(__file__).parents[1]


def _pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pairs}


def test_the_default_lock_has_no_ray_and_the_extra_pins_it():
    base, extra = _pins("requirements.lock"), _pins("requirements-ray.lock")
    assert "ray" not in base and "ray" in extra
    assert not set(base) & set(extra)  # the extra adds packages, it never re-pins the base
    assert "requirements-ray.lock" in (ROOT / "Makefile").read_text()  # `make ray` installs it


def test_the_ray_backend_without_ray_is_one_error_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    job = ShadowJob(spec=HeadSpec(outputs=2), n=2, count=4, shard_size=4, seed=0, pool_sha256="x")
    feats, labels = torch.randn(8, 3), torch.arange(8) % 2
    with pytest.raises(ImportError, match=r"privlab\[ray\]"):
        generate_shadow_heads(job, feats, labels, tmp_path, backend="ray")
