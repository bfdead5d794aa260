"""Shadow heads by the million (Maciazek & Allison, Algorithm 1), streamed to disk in shards.

Shard i holds ``shard_size`` heads, each trained on its own random training set of N feature
vectors drawn from the attacker's pool, together with the pool indices of that set and the
labels the head was trained on. Sets are balanced (N/C examples of every class, the MNIST and
CIFAR experiments) or ``one_vs_rest`` (the CelebA face-recognition experiment: M = N/10 images
of one random identity labelled 1 and 9M of other identities labelled 0, a binary head with
the positive class up-weighted). Heads train by full-batch GD or, with ``dp``, DP-SGD. A
shard depends only on (job, i): its generator is seeded from the job's seed and i, so shards
can be produced in any order, on any worker (``backend="ray"``), and give the same heads.

Every shard file is safetensors with the job's configuration hash in its metadata. Resuming
skips the shards already on disk after checking that hash; a shard from another configuration
or a corrupt file is an error that names the file, so shards of different jobs never mix.
Memory is bounded by one shard per worker: nothing holds all the heads at once. The attack
reads a finished job through :func:`shadow_heads` (the shard layout is described in
:mod:`privlab.attacks.reconstruction.shadow_shards`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from privlab.attacks.reconstruction.shadow_shards import ShadowHeads
from privlab.run.backend import Backend, make_backend
from privlab.run.files import atomic_write_bytes, stable_hash
from privlab.training.heads import HeadDP, HeadSpec, init_heads, train_heads, train_heads_dp

FORMAT = "privlab-shadow-heads-1"


class ShardError(ValueError):
    """A shard file is corrupt, incomplete or belongs to another configuration."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShadowJob:
    """What to generate: ``count`` heads of ``spec`` on sets of ``n`` pool examples.

    ``task="balanced"``: the pool labels are the head's classes; ``"one_vs_rest"``: the pool
    labels are identities and the head is binary (``spec.outputs == 1``), class 1 = the set's
    positive identity. ``dp``: train with DP-SGD (cross-entropy heads)."""

    spec: HeadSpec
    n: int
    count: int
    shard_size: int = 10_000
    seed: int = 0
    pool_sha256: str  # the features the heads are trained on (part of the configuration)
    task: Literal["balanced", "one_vs_rest"] = "balanced"
    dp: HeadDP | None = None

    def __post_init__(self) -> None:
        if self.n < 1 or self.count < 1 or self.shard_size < 1:
            raise ValueError("n, count and shard_size must be ≥ 1")
        if self.task == "balanced" and self.spec.outputs > 1 and self.n % self.spec.outputs:
            raise ValueError(
                f"balanced sets need N divisible by the {self.spec.outputs} classes, got N={self.n}"
            )
        if self.task == "one_vs_rest" and (self.spec.outputs != 1 or self.n % 10):
            raise ValueError(
                "one_vs_rest sets need a binary head (outputs: 1) and N divisible by 10 "
                f"(M positives, 9M negatives); got outputs={self.spec.outputs}, N={self.n}"
            )
        if self.dp is not None and self.spec.outputs < 2:
            raise ValueError("DP-SGD shadow heads must be cross-entropy heads (outputs ≥ 2)")

    @property
    def classes(self) -> int:
        """Size of the reconstructor's one-hot class input."""
        return max(self.spec.outputs, 2)

    @property
    def target_classes(self) -> list[int]:
        """The classes whose training images are reconstructed (one_vs_rest: the positives)."""
        return [1] if self.task == "one_vs_rest" else list(range(self.classes))

    @property
    def shards(self) -> int:
        return -(-self.count // self.shard_size)

    def as_dict(self) -> dict[str, Any]:
        """The job as plain data (the head recipe as its fields)."""
        return dataclasses.asdict(self) | {"spec": self.spec.model_dump()}

    def key(self) -> str:
        return stable_hash({"format": FORMAT, **self.as_dict()})

    def shard_count(self, i: int) -> int:
        return min(self.shard_size, self.count - i * self.shard_size)


def balanced_sets(
    labels: torch.Tensor, k: int, n: int, classes: int, generator: torch.Generator
) -> torch.Tensor:
    """k × n pool indices: n/classes distinct examples of every class per set, classes in order."""
    per = n // classes
    parts = []
    for c in range(classes):
        members = (labels == c).nonzero()[:, 0]
        if len(members) < per:
            raise ValueError(f"class {c} has {len(members)} pool examples, sets need {per}")
        # the per smallest of k·|class| uniform keys: a uniform draw without replacement
        order = (
            torch.rand(k, len(members), generator=generator).topk(per, dim=1, largest=False).indices
        )
        parts.append(members[order])
    return torch.cat(parts, dim=1)


def one_vs_rest_sets(
    identities: torch.Tensor, k: int, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k × n pool indices and binary labels: M = n/10 distinct images of one random identity
    (label 1, first) and 9M distinct images of other identities (label 0)."""
    m = n // 10
    ids, counts = identities.unique(return_counts=True)
    eligible = ids[counts >= m]
    if len(eligible) == 0 or len(identities) - int(counts.min()) < n - m:
        raise ValueError(f"the pool cannot supply {m} positives and {n - m} negatives per set")
    chosen = eligible[torch.randint(0, len(eligible), (k,), generator=generator)]
    same = identities[None, :] == chosen[:, None]  # k × P
    keys = torch.rand(k, len(identities), generator=generator)
    pos = keys.masked_fill(~same, 2.0).topk(m, dim=1, largest=False).indices
    neg = keys.masked_fill(same, 2.0).topk(n - m, dim=1, largest=False).indices
    labels = torch.cat([torch.ones(k, m), torch.zeros(k, n - m)], dim=1).long()
    return torch.cat([pos, neg], dim=1), labels


def train_shard(
    job: ShadowJob, i: int, features: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Shard ``i`` of ``job``: trained heads (stacked), their training-set indices and the
    labels they were trained on."""
    gen = torch.Generator().manual_seed(job.seed * 1_000_003 + i)
    k = job.shard_count(i)
    if job.task == "one_vs_rest":
        idx, y = one_vs_rest_sets(labels, k, job.n, gen)
    elif job.spec.outputs > 1:
        idx = balanced_sets(labels, k, job.n, job.classes, gen)
        y = labels[idx]
    else:  # binary heads: any n examples (the caller's pool encodes the class balance)
        idx = torch.rand(k, len(labels), generator=gen).argsort(dim=1)[:, : job.n]
        y = labels[idx]
    params = init_heads(job.spec, k, features.shape[1], generator=gen)
    trained = (
        train_heads(job.spec, params, features[idx], y)
        if job.dp is None
        else train_heads_dp(job.spec, job.dp, params, features[idx], y, generator=gen)
    )
    return {
        **{f"param.{name}": v.contiguous() for name, v in trained.items()},
        "indices": idx.int(),
        "labels": y.to(torch.uint8),
    }


def shard_path(out_dir: Path, i: int) -> Path:
    return Path(out_dir) / f"shard-{i:05d}.safetensors"


def read_shard(path: Path, job: ShadowJob) -> dict[str, torch.Tensor]:
    """Load one shard, checking that it belongs to ``job`` and is complete."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        if not Path(path).exists():  # removed while in use (by hand, or an older privlab)
            raise ShardError(f"{path}: shard missing; run again to regenerate it") from None
        raise ShardError(
            f"{path}: corrupt or unreadable shard ({err}); delete it to regenerate"
        ) from None
    if meta.get("config_key") != job.key():
        raise ShardError(
            f"{path}: shard of another configuration (key {meta.get('config_key', '?')[:12]}…, "
            f"this job {job.key()[:12]}…); use another folder or delete it"
        )
    expected = job.shard_count(int(meta.get("shard", -1)))
    if any(k not in tensors for k in ("indices", "labels")) or len(tensors["indices"]) != expected:
        raise ShardError(
            f"{path}: incomplete shard ({len(tensors.get('indices', []))} of {expected} heads)"
        )
    return tensors


def write_shard(path: Path, job: ShadowJob, i: int, tensors: dict[str, torch.Tensor]) -> None:
    meta = {
        "config_key": job.key(),
        "shard": str(i),
        "job": json.dumps(job.as_dict(), default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _missing(job: ShadowJob, out_dir: Path) -> list[int]:
    missing = []
    for i in range(job.shards):
        path = shard_path(out_dir, i)
        if path.is_file():
            read_shard(path, job)  # raises on a foreign or corrupt shard
        else:
            missing.append(i)
    return missing


def generate_shadow_heads(
    job: ShadowJob,
    features: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path,
    *,
    backend: Backend | str = "local",
    on_shards: Callable[[int], object] = lambda done: None,
) -> list[Path]:
    """Train every missing shard of ``job`` and write it to ``out_dir``; returns all shard paths.

    ``backend``: where the shards train (:mod:`privlab.run.backend`; a name, or a backend
    already made). Workers return shards and this process writes each as it arrives (no
    shared filesystem needed; an interrupted job resumes from the shards written).
    ``on_shards(k)``: told of k more shards done (first those already on disk, then each one
    written), for a progress bar of ``job.shards`` steps."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps({"key": job.key(), **job.as_dict()}, default=str))
    features, labels = features.float().contiguous(), labels.long()
    todo = _missing(job, out)
    on_shards(job.shards - len(todo))
    runner = make_backend(backend) if isinstance(backend, str) else backend
    shared = {"job": job, "features": features, "labels": labels}
    for k, shard in runner.map(_shard, todo, shared=shared):
        write_shard(shard_path(out, todo[k]), job, todo[k], shard)
        on_shards(1)
    return [shard_path(out, i) for i in range(job.shards)]


def _shard(
    i: int, *, job: ShadowJob, features: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    return train_shard(job, i, features, labels)


def iter_shards(job: ShadowJob, out_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Every shard of a finished job, checked, one at a time (bounded memory)."""
    for i in range(job.shards):
        yield read_shard(shard_path(Path(out_dir), i), job)


def shadow_heads(job: ShadowJob, out_dir: str | Path) -> ShadowHeads:
    """A finished job's shards as the weak adversary reads them (checked on every pass)."""
    return ShadowHeads(
        classes=job.classes,
        target_classes=tuple(job.target_classes),
        task=job.task,
        read=functools.partial(iter_shards, job, out_dir),
    )
