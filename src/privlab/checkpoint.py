"""What a long computation saves its progress to, so that an interrupted run resumes.

The training loop (:func:`privlab.training.loop.train`, every epoch) and the weak adversary's
reconstructor (:meth:`~privlab.attacks.reconstruction.weak_adversary.WeakAdversary.fit`, every
validation check) take one; :class:`privlab.run.store.FileCheckpoint` keeps it in a file.
A computation resumed from its checkpoint ends with the same result as one never interrupted.
"""

from __future__ import annotations

from typing import Any, Protocol


class Checkpoint(Protocol):
    """``load`` gives the last state saved for this very computation (None when there is
    none), ``save`` replaces it. A state is a tree of dicts, lists, scalars and tensors."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...
