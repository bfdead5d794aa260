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
from privlab.run.context import RunContext, Stopwatch
from privlab.run.environment import versions
from privlab.run.progress import Progress, SilentProgress
from privlab.studies.base import Study


def _cell_task(unit: tuple[int, Any], *, study: str, ctx: RunContext) -> dict[str, Any]:
    """One part of one seed of a study as a backend task (its own units run where it runs)."""
    seed, cell = unit
    return dict(STUDIES.get(study)().run(ctx, cell, seed))


def _seed_runs(study: Study, section: Any, ctx: RunContext) -> list[dict[str, Any]]:
    """The study once per seed: here, one after another, or, on a remote backend with several
    seeds or parts (``Study.cells``: the targets of the targets study), each (seed, part) a
    task whose result is a ``state/`` unit, written as it arrives (inside the task the study's
    own units go to ``Backend.inner``, with no progress bars); the parts of a seed are then
    merged into its run."""
    cells = study.cells(section)
    if not ctx.backend.remote or len(ctx.seeds) * len(cells) < 2:
        return [study.run(ctx, section, seed) for seed in ctx.seeds]
    units = [
        (f"cell-{study.name}", {"study": study.name, "seed": seed, "section":
                                cell.model_dump(mode="json"), "version": __version__}, (seed, cell))
        for seed in ctx.seeds
        for cell in cells
    ]  # fmt: skip
    remote = replace(ctx, progress=SilentProgress(), backend=ctx.backend.inner(), timings={})
    ctx.state.fill(ctx.backend, _cell_task, units, shared={"study": study.name, "ctx": remote})
    done = [
        ctx.state.get_or_run(prefix, key, partial(study.run, ctx, cell, seed))
        for prefix, key, (seed, cell) in units
    ]
    return [study.merge(done[i : i + len(cells)]) for i in range(0, len(done), len(cells))]


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
