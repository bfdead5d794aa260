"""Rich progress bars for the CLI (library code stays silent), and the run's warnings shown
once each."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.text import Text


class _Handle:
    def __init__(self, bars: RichProgress, task_id: int) -> None:
        self.bars, self.task_id = bars, task_id

    def advance(self, steps: int = 1) -> None:
        self.bars.advance(self.task_id, steps)  # type: ignore[arg-type]

    def done(self) -> None:
        task = self.bars.tasks[self.task_id]
        self.bars.update(self.task_id, completed=task.total)  # type: ignore[arg-type]


class RichProgressReporter:
    """Implements :class:`privlab.run.progress.Progress` with rich bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
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
        return _Handle(self.bars, self.bars.add_task(description, total=total))  # type: ignore[arg-type]

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
