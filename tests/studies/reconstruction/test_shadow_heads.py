"""Sharded, resumable shadow-head generation; the Ray backend gives the same shards."""

import dataclasses

import pytest
import torch

from privlab.studies.reconstruction.shadow_heads import (
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
from ray_support import require_ray


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
    told: list[int] = []  # the progress callback: shards done, as they are written
    paths = generate_shadow_heads(job, features, labels, tmp_path / "a", on_shards=told.append)
    assert len(paths) == 4 and all(p.is_file() for p in paths)  # 16 + 16 + 16 + 2
    assert told == [0, 1, 1, 1, 1]
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
    told.clear()
    generate_shadow_heads(job, features, labels, tmp_path / "a", on_shards=told.append)
    assert paths[3].is_file() and paths[0].stat().st_mtime_ns == mtime
    assert told == [3, 1]  # the three kept count as done from the start


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
    path.unlink()  # gone while a fit reads the shards: say so, not "corrupt … delete it"
    with pytest.raises(ShardError, match=r"shard-00001\.safetensors: shard missing; run again"):
        read_shard(path, job)


def test_ray_backend_gives_the_same_shards(pool, tmp_path):
    ray = require_ray()
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


def test_one_vs_rest_sets_hold_one_identity_against_the_others():
    from privlab.studies.reconstruction.shadow_heads import one_vs_rest_sets

    identities = torch.arange(300) % 30
    idx, y = one_vs_rest_sets(identities, 50, 20, torch.Generator().manual_seed(0))
    assert idx.shape == y.shape == (50, 20)
    assert y[:, :2].eq(1).all() and y[:, 2:].eq(0).all()  # M = 2 positives, 18 negatives
    for row in idx:
        ids = identities[row]
        assert len(set(row.tolist())) == 20
        assert ids[0] == ids[1] and not (ids[2:] == ids[0]).any()
    with pytest.raises(ValueError, match="cannot supply"):
        one_vs_rest_sets(torch.zeros(30, dtype=torch.long), 2, 20, torch.Generator())


def test_job_options_are_checked(pool):
    from privlab.training.heads import HeadDP

    with pytest.raises(ValueError, match="binary head"):
        _job(pool, task="one_vs_rest")
    with pytest.raises(ValueError, match="divisible by 10"):
        _job(pool, task="one_vs_rest", spec=HeadSpec(outputs=1, hidden=4), n=8)
    with pytest.raises(ValueError, match="cross-entropy heads"):
        _job(pool, spec=HeadSpec(outputs=1, hidden=3), task="one_vs_rest", n=10, dp=HeadDP())


def test_dp_shadow_heads_are_noisy_and_keep_their_labels(pool):
    from privlab.training.heads import HeadDP

    features, labels = pool
    clean = train_shard(_job(pool), 0, features, labels)
    noisy_job = _job(pool, dp=HeadDP(clip=1.0, noise_multiplier=5.0))
    noisy = train_shard(noisy_job, 0, features, labels)
    assert torch.equal(clean["indices"], noisy["indices"])
    assert torch.equal(noisy["labels"].long(), labels[noisy["indices"].long()])
    assert noisy_job.key() != _job(pool).key()
    # the noise dominates: DP heads are far from the non-private ones
    diff = (clean["param.0.weight"] - noisy["param.0.weight"]).norm()
    assert diff > clean["param.0.weight"].norm()
