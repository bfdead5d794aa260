"""run_experiment(config) → report: the one runner, for every study.

It builds the run context once, lets every study refuse an impossible config before anything
is trained, runs each study once per seed, and writes ``report.json`` and ``report.html``. A
run folder holds those, ``models/`` and ``state/`` (finished units of every study: an
interrupted run resumes where it stopped).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from privlab import __version__
from privlab.config.schema import ExperimentConfig
from privlab.registry import STUDIES
from privlab.report.schema import SCHEMA_VERSION
from privlab.report.writer import write_report
from privlab.run.context import RunContext, Stopwatch
from privlab.run.environment import versions
from privlab.run.progress import Progress
from privlab.studies.base import Study


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
            runs = [study.run(ctx, section, seed) for seed in ctx.seeds]
        report["studies"][study.name] = {"runs": runs}
    report["timings"] = {"total_seconds": time.perf_counter() - start, **ctx.timings}
    write_report(report, ctx.out)
    return report
