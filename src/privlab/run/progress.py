"""Progress reporting without a UI dependency in library code.

The runner calls ``progress.task(description, total)`` and advances the returned handle; the
CLI supplies a rich implementation, library users get silence by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class TaskHandle(Protocol):
    def advance(self, steps: int = 1) -> None: ...
    def done(self) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int) -> TaskHandle: ...
    def log(self, message: str) -> None: ...


class _SilentHandle:
    def advance(self, steps: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


class SilentProgress:
    def task(self, description: str, total: int) -> TaskHandle:
        return _SilentHandle()

    def log(self, message: str) -> None:
        pass


@contextmanager
def step(progress: Progress, description: str) -> Iterator[None]:
    """One unit of work shown as a one-step task, done when the block ends."""
    handle = progress.task(description, 1)
    yield
    handle.advance()
    handle.done()
