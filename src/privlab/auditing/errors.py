"""The one error type of the audit's inputs, and a one-line rendering of a foreign exception."""

from __future__ import annotations


class AuditInputError(ValueError):
    """A user's model, weights or data file cannot be audited as given.

    One problem per error; the message is one line that starts with the file (or the split,
    for checks on data already in memory) and says what is wrong with it.
    """

    def __init__(self, where: object, problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


def describe(err: BaseException) -> str:
    """``"TypeName: first line of the message"`` (just the type name if the message is empty)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
