"""The run context: everything a study's run shares, built once per run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from privlab.run.backend import Backend, LocalBackend, make_backend
from privlab.run.environment import resolve_device
from privlab.run.files import check_writable_dir
from privlab.run.model_cache import default_cache_dir
from privlab.run.progress import Progress, SilentProgress
from privlab.run.store import StateDir


@dataclass
class RunContext:
    """The output folder, its resumable ``state/``, the model cache, the device, progress
    reporting and the seeds. Studies add their time to ``timings``."""

    out: Path
    state: StateDir
    cache: Path
    device: torch.device
    progress: Progress
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    backend: Backend = field(default_factory=LocalBackend)

    @classmethod
    def create(
        cls,
        out: str | Path,
        *,
        seeds: list[int],
        device: str | None = "auto",
        cache_dir: str | Path | None = None,
        progress: Progress | None = None,
        backend: str = "local",
        address: str | None = None,
    ) -> RunContext:
        """Check the folders and the device before anything runs (a bad one is a ValueError
        that names it)."""
        out = Path(out)
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        resolved = resolve_device(device)  # before any folder is made
        check_writable_dir(out, "output folder")
        check_writable_dir(cache, "model cache (PRIVLAB_CACHE / cache_dir)")
        runner = make_backend(backend, address)  # Ray missing or unreachable: before any work
        return cls(
            out=out,
            state=StateDir(out),
            cache=cache,
            device=resolved,
            progress=progress or SilentProgress(),
            seeds=list(seeds),
            backend=runner,
        )

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


class Stopwatch:
    """``with Stopwatch(ctx, key):`` adds the block's wall time to ``ctx.timings[key]``."""

    def __init__(self, ctx: RunContext, key: str) -> None:
        self.ctx, self.key = ctx, key

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ctx.add_time(self.key, time.perf_counter() - self.start)
