"""Sharded, resumable shadow-head generation; the Ray backend gives the same shards."""

import dataclasses

import pytest
import torch

from privlab.experiment.shadow_heads import (
    ShadowJob,
    ShardError,
    balanced_sets,
    generate_shadow_heads,
    iter_shards,
    read_shard,
    shard_path,
    train_shard,
)
from privlab.training.heads import HeadSpec, build_head


@pytest.fixture(scope="module")
def pool():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    centres = torch.randn(4, 12, generator=gen)
    features = centres[labels] + 0.5 * torch.randn(200, 12, generator=gen)
    return features, labels


def _job(pool, **kw):
    features, labels = pool
    base = dict(spec=HeadSpec(outputs=4, lr=0.5), n=8, count=50, shard_size=16, seed=3)
    h = str(hash((features.sum().item(), labels.sum().item())))
    return ShadowJob(**{**base, **kw}, pool_sha256=h)


def test_balanced_sets_hold_distinct_examples_of_every_class(pool):
    _, labels = pool
    idx = balanced_sets(labels, 30, 8, 4, torch.Generator().manual_seed(0))
    assert idx.shape == (30, 8)
    for row in idx:
        assert len(set(row.tolist())) == 8
        assert labels[row].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_shards_are_written_resumed_and_reproducible(pool, tmp_path):
    features, labels = pool
    job = _job(pool)
    paths = generate_shadow_heads(job, features, labels, tmp_path / "a")
    assert len(paths) == 4 and all(p.is_file() for p in paths)  # 16 + 16 + 16 + 2
    shards = list(iter_shards(job, tmp_path / "a"))
    assert [len(s["indices"]) for s in shards] == [16, 16, 16, 2]
    # a shard depends only on (job, i): regenerating one in isolation gives the same heads
    again = train_shard(job, 2, features, labels)
    assert all(torch.equal(again[k], shards[2][k].to(again[k].dtype)) for k in again)
    # heads fit their own training sets
    head = build_head(job.spec, 12)
    s = shards[0]
    with torch.no_grad():
        for name, p in head.named_parameters():
            p.copy_(s[f"param.{name}"][0])
        idx = s["indices"][0].long()
        assert float((head(features[idx]).argmax(1) == labels[idx]).float().mean()) == 1.0
    # resume: a deleted shard is regenerated, the others are kept as they are
    mtime = paths[0].stat().st_mtime_ns
    paths[3].unlink()
    generate_shadow_heads(job, features, labels, tmp_path / "a")
    assert paths[3].is_file() and paths[0].stat().st_mtime_ns == mtime


def test_foreign_and_corrupt_shards_are_named(pool, tmp_path):
    features, labels = pool
    job = _job(pool)
    generate_shadow_heads(job, features, labels, tmp_path / "b")
    other = dataclasses.replace(job, seed=4)
    with pytest.raises(
        ShardError, match=r"shard-00000\.safetensors: shard of another configuration"
    ):
        generate_shadow_heads(other, features, labels, tmp_path / "b")
    path = shard_path(tmp_path / "b", 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ShardError, match=r"shard-00001\.safetensors: corrupt"):
        read_shard(path, job)


def test_ray_backend_gives_the_same_shards(pool, tmp_path):
    ray = pytest.importorskip("ray")
    features, labels = pool
    job = _job(pool)
    generate_shadow_heads(job, features, labels, tmp_path / "local")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        generate_shadow_heads(job, features, labels, tmp_path / "ray", backend="ray")
    finally:
        ray.shutdown()
    for a, b in zip(
        iter_shards(job, tmp_path / "local"), iter_shards(job, tmp_path / "ray"), strict=True
    ):
        assert all(torch.equal(a[k], b[k]) for k in a)
