"""The one protocol every attack family's study implements.

A study owns its config section (a pydantic model), its run (one seed, given the shared
:class:`~privlab.run.context.RunContext`, returns a JSON-able dict), and its rendering: an
HTML section, console tables and comparable scalars for ``privlab report a b --markdown``.
The runner (:mod:`privlab.run.runner`) and the renderers (:mod:`privlab.report`) only ever
talk to this protocol; they know no family.

Register a study with ``@STUDIES.register("name")`` on its class; ``name`` is both its config
section key and its key under the report's ``studies``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from privlab.run.context import RunContext

#: a study's part of ``report.json``: ``{"runs": [one dict per seed, each with "seed"]}``
StudyReport = Mapping[str, Any]


@dataclass(frozen=True)
class TextTable:
    """A table of already formatted cells, for the terminal and for markdown."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    notes: Sequence[str] = field(default_factory=tuple)


@runtime_checkable
class Study(Protocol):
    """An attack family's study (see the module docstring)."""

    #: the config section key and the report key (set by the registration)
    name: ClassVar[str]
    #: a human title for the report's section
    title: ClassVar[str]
    #: the pydantic schema of the config section
    section: ClassVar[type[BaseModel]]
    #: studies run in ascending ``order`` (then by name)
    order: ClassVar[int]

    def check(self, cfg: Any, ctx: RunContext) -> None:
        """Refuse an impossible section before anything is trained (raise ConfigError)."""

    def run(self, ctx: RunContext, cfg: Any, seed: int) -> dict[str, Any]:
        """Run the study for one seed; the result is JSON-able and cached units resume."""

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        """The study's HTML section of the report page."""

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        """The study's console tables (the markdown summary uses them too)."""

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        """Comparable numbers of one seed's run: ``{row: {metric: value}}``. Run comparison
        and the mean ± std over seeds are computed from these."""

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        """What leaks and how badly, in a few plain sentences (the top of the report)."""

    def cells(self, cfg: Any) -> list[Any]:
        """The section cut into independent parts, each a section that ``run`` accepts; a
        remote backend runs every (seed, part) as a task. One part: the seed is the unit."""

    def merge(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One seed's run from its parts' runs (in ``cells`` order): what ``run`` on the
        whole section returns."""


class StudyBase:
    """Defaults for the optional parts of :class:`Study`: no checks, scalars or headline, and
    the whole section as the one part of a seed."""

    order: ClassVar[int] = 100
    #: the study's own tables already summarise a run's seeds; else the report adds a table
    #: of its scalars as mean ± std over the seeds (privlab.report.seeds)
    summarises_seeds: ClassVar[bool] = False

    def check(self, cfg: Any, ctx: RunContext) -> None:
        return None

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        return {}

    def headline(self, report: Mapping[str, Any], section: StudyReport) -> list[str]:
        return []

    def cells(self, cfg: Any) -> list[Any]:
        return [cfg]

    def merge(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        (run,) = runs
        return run


def runs_of(section: StudyReport) -> list[Mapping[str, Any]]:
    """The per-seed runs of a study's report section, skipping malformed entries."""
    return [r for r in section.get("runs") or [] if isinstance(r, Mapping)]
