"""Rich progress bars for the CLI (library code stays silent), and the run's warnings shown
once each."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text


class _Handle:
    def __init__(self, reporter: RichProgressReporter, task_id: int) -> None:
        self.reporter, self.task_id = reporter, task_id
        self.last_line = reporter.clock()
        #: (time, steps done) at the first advance: the rate is measured from there, so that
        #: the steps a resumed task counts at once at its start do not inflate it
        self.since: tuple[float, float] | None = None

    def advance(self, steps: int = 1) -> None:
        self.reporter.bars.advance(self.task_id, steps)  # type: ignore[arg-type]
        if self.since is None:
            self.since = (self.reporter.clock(), self.reporter.bars.tasks[self.task_id].completed)
        self.reporter.line_if_due(self)

    def left(self, now: float) -> timedelta | None:
        """The time the rest of the task should take at its rate since its first advance."""
        task = self.reporter.bars.tasks[self.task_id]
        if self.since is None or task.total is None:
            return None
        start, done = self.since
        if task.completed <= done or now <= start:
            return None
        rate = (task.completed - done) / (now - start)
        return timedelta(seconds=round(max(0.0, task.total - task.completed) / rate))

    def done(self) -> None:
        task = self.reporter.bars.tasks[self.task_id]
        self.reporter.bars.update(self.task_id, completed=task.total)  # type: ignore[arg-type]


class RichProgressReporter:
    """Implements :class:`privlab.run.progress.Progress` with rich bars.

    Where the console is no terminal (a run piped to a log file), rich draws the bars once,
    at the end; so that such a log shows a long task moving, each task also writes a plain
    line (``[HH:MM:SS] training pgd_at/seed1: 9/30, 0:05:07, ~0:11:56 left``) when it advances
    and its last line is ``every`` seconds old; the time left is at the task's rate since its
    first advance (a resumed task counts the steps done before at once)."""

    def __init__(
        self, console: Console, every: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.console, self.every, self.clock = console, every, clock
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            get_time=clock,
            transient=False,
        )

    def __enter__(self) -> RichProgressReporter:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars.tasks:
            self.bars.__exit__(None, None, None)
        else:  # nothing ran (an error before the first task): no empty render, no blank line
            self.bars.live.transient = True
            self.bars.live.stop()

    def task(self, description: str, total: int) -> _Handle:
        return _Handle(self, self.bars.add_task(description, total=total))  # type: ignore[arg-type]

    def line_if_due(self, handle: _Handle) -> None:
        now = self.clock()
        if self.console.is_terminal or now - handle.last_line < self.every:
            return
        handle.last_line = now
        task = self.bars.tasks[handle.task_id]  # type: ignore[index]
        total = "?" if task.total is None else f"{task.total:g}"
        elapsed = timedelta(seconds=int(task.elapsed or 0))
        left = handle.left(now)
        eta = "" if left is None else f", ~{left} left"
        self.log(f"{task.description}: {task.completed:g}/{total}, {elapsed}{eta}")

    def log(self, message: str) -> None:
        """One line, ``[HH:MM:SS] message``: no source path padded to the console's width
        (in a log file that console is 10,000 columns wide)."""
        stamp = time.strftime("[%X]")
        self.console.print(Text.assemble((stamp, "log.time"), " ", message), soft_wrap=True)


@contextmanager
def warnings_once() -> Iterator[None]:
    """Show each warning (category and text) once inside the block, however many models
    raise it (Opacus' "Secure RNG turned off", torch's "Full backward hook is firing").

    Libraries that reset the warning filters (``catch_warnings``) make Python's own
    once-per-location rule show a warning again for every model; this dedups on what is shown.
    Filters still apply: an ignored warning stays ignored, an error stays an error."""
    seen: set[tuple[type[Warning], str]] = set()
    with warnings.catch_warnings():
        shown_by = warnings.showwarning

        def show_once(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            key = (category, str(message))
            if key not in seen:
                seen.add(key)
                shown_by(message, category, filename, lineno, file, line)

        warnings.showwarning = show_once
        yield
