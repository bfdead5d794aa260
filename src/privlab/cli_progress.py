"""Rich progress bars for the CLI (library code stays silent)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


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
        self.bars.__exit__(None, None, None)

    def task(self, description: str, total: int) -> _Handle:
        return _Handle(self.bars, self.bars.add_task(description, total=total))  # type: ignore[arg-type]

    def log(self, message: str) -> None:
        self.console.log(message)
