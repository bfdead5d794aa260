"""run_experiment(config) → report: the one runner, for every study.

It builds the run context once, lets every study refuse an impossible config before anything
is trained, runs each study once per seed, and writes ``report.json`` and ``report.html``. A
run folder holds those, ``models/`` and ``state/`` (finished units of every study: an
interrupted run resumes where it stopped).
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from privlab import __version__
from privlab.config.schema import ExperimentConfig
from privlab.registry import STUDIES
from privlab.report.schema import SCHEMA_VERSION
from privlab.report.writer import write_report
from privlab.run.backend import LocalBackend
from privlab.run.context import RunContext, Stopwatch
from privlab.run.environment import versions
from privlab.run.progress import Progress, SilentProgress
from privlab.studies.base import Study


def _seed_task(seed: int, *, study: str, section: Any, ctx: RunContext) -> dict[str, Any]:
    """One seed of a study as a backend task (its own units run where it runs)."""
    return dict(STUDIES.get(study)().run(ctx, section, seed))


def _seed_runs(study: Study, section: Any, ctx: RunContext) -> list[dict[str, Any]]:
    """The study once per seed: here, one after another, or, on a remote backend with several
    seeds, each seed a task (its result a ``state/`` unit, written as it arrives; inside the
    task the study's units run there, one after another, with no progress bars)."""
    if not ctx.backend.remote or len(ctx.seeds) < 2:
        return [study.run(ctx, section, seed) for seed in ctx.seeds]
    section_key = section.model_dump(mode="json")
    units = [
        (f"seed-{study.name}", {"study": study.name, "seed": seed, "section": section_key,
                                "version": __version__}, seed)
        for seed in ctx.seeds
    ]  # fmt: skip
    remote = replace(ctx, progress=SilentProgress(), backend=LocalBackend(), timings={})
    shared = {"study": study.name, "section": section, "ctx": remote}
    ctx.state.fill(ctx.backend, _seed_task, units, shared=shared)
    return [ctx.state.get_or_run(p, k, partial(study.run, ctx, section, s)) for p, k, s in units]


def planned_studies(config: ExperimentConfig) -> list[tuple[Study, Any]]:
    """The config's studies with their sections, in run order."""
    studies = [(STUDIES.get(name)(), section) for name, section in config.studies().items()]
    return sorted(studies, key=lambda pair: (pair[0].order, pair[0].name))


def report_header(config: ExperimentConfig, ctx: RunContext) -> dict[str, Any]:
    """The keys every report starts with: schema, config, seeds, versions, device."""
    return {
        "schema_version": SCHEMA_VERSION,
        "config": {
            k: v
            for k, v in config.model_dump(mode="json").items()
            if v is not None or k not in STUDIES
        },
        "seeds": ctx.seeds,
        "versions": versions() | {"privlab": __version__},
        "device": str(ctx.device),
    }


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    backend: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Run every study of ``config`` for every seed; write and return the report.
    ``device``, ``backend`` and ``address`` override the config's header."""
    start = time.perf_counter()
    ctx = RunContext.create(
        out_dir,
        seeds=config.run_seeds(),
        device=device or config.device,
        cache_dir=config.cache_dir,
        progress=progress,
        backend=backend or config.backend,
        address=address or config.address,
    )
    studies = planned_studies(config)
    for study, section in studies:
        study.check(section, ctx)
    report = report_header(config, ctx)
    report["studies"] = {}
    for study, section in studies:
        with Stopwatch(ctx, f"{study.name}_seconds"):
            runs = _seed_runs(study, section, ctx)
        report["studies"][study.name] = {"runs": runs}
    report["timings"] = {"total_seconds": time.perf_counter() - start, **ctx.timings}
    write_report(report, ctx.out)
    return report
