"""The null weights' law (the shadow weights' mean, std and covariance) is kept beside the
shards: a resumed fit reads it back, identical, instead of passing over a million heads again,
and a damaged file is recomputed."""

import pytest
import torch

from privlab.run.files import StoreError
from privlab.run.store import FileCheckpoint
from privlab.studies.reconstruction.weak import _null_law, shadow_dir


class Shards:
    """Stands in for ShadowHeads: yields shards whose weights are ``theta`` in parts."""

    def __init__(self, theta: torch.Tensor) -> None:
        self.theta, self.passes = theta, 0

    def __iter__(self):
        self.passes += 1
        for part in self.theta.split(40):
            yield {"theta": part}


@pytest.fixture
def shards(monkeypatch):
    monkeypatch.setattr(
        "privlab.attacks.reconstruction.weak_adversary.shard_weights", lambda s: s["theta"]
    )
    return Shards(torch.randn(200, 6) * torch.arange(1, 7) + 2)


def test_a_resumed_fit_reads_the_null_law_back_without_a_pass(tmp_path, shards):
    first = _null_law(shards, "a" * 64, tmp_path)
    assert (
        shards.passes == 1 and (shadow_dir(tmp_path, "a" * 64) / "null_law.safetensors").is_file()
    )
    again = _null_law(shards, "a" * 64, tmp_path)
    assert shards.passes == 1  # read back, not recomputed
    assert again.count == first.count == 200
    for name in ("mean", "m2", "comoment"):
        assert torch.equal(getattr(again, name), getattr(first, name))
    assert torch.equal(again(shards.theta), first(shards.theta))
    assert torch.allclose(again.covariance(), torch.cov(shards.theta.double().T, correction=0))
    _null_law(shards, "b" * 64, tmp_path)  # another job: its own pass
    assert shards.passes == 2


def test_a_damaged_null_law_is_recomputed(tmp_path, shards):
    first = _null_law(shards, "a" * 64, tmp_path)
    (shadow_dir(tmp_path, "a" * 64) / "null_law.safetensors").write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="null_law.safetensors"):
        again = _null_law(shards, "a" * 64, tmp_path)
    assert shards.passes == 2 and torch.equal(again.comoment, first.comoment)


def test_a_cache_that_cannot_be_written_only_warns(tmp_path, shards, monkeypatch):
    def full(self, state):
        raise StoreError(28, f"cannot write {self.path}: No space left on device", str(self.path))

    monkeypatch.setattr(FileCheckpoint, "save", full)
    with pytest.warns(UserWarning, match="No space left"):
        null = _null_law(shards, "a" * 64, tmp_path)
    assert null.count == 200 and shards.passes == 1
