"""The ``scores:`` section: membership metrics of per-example scores computed elsewhere.

``file`` is an ``.npz`` with arrays ``members`` and ``nonmembers`` (1-d scores or losses; 2-d
logits or probabilities with ``members_labels`` / ``nonmembers_labels``, the true classes) or
a CSV with a ``score`` (or ``loss``) column and an ``is_member`` (0/1) column; for logits or
probabilities a CSV has one column per class plus ``label_column`` (default ``label``).
``kind`` says what the values are; ``higher_is_member`` (1-d values only) overrides the
direction (default: a higher score, a lower loss means member).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from privlab.config.base import _Strict

Kind = Literal["score", "loss", "logits", "probs"]


class ScoresConfig(_Strict):
    """Where the scores are and what they are (see the module docstring)."""

    file: str
    kind: Kind = "score"
    #: CSV logits / probs: the column of the true class (default ``label``)
    label_column: str | None = None
    #: score / loss: whether a higher value means member (default: score yes, loss no)
    higher_is_member: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> ScoresConfig:
        if self.higher_is_member is not None and self.kind in ("logits", "probs"):
            raise ValueError(
                f"higher_is_member applies to kind score or loss, not {self.kind} "
                "(the true-class confidence is always higher for members)"
            )
        if not self.file:
            raise ValueError("file: give the scores file (.npz or .csv)")
        return self

    @property
    def higher_means_member(self) -> bool:
        if self.higher_is_member is not None:
            return self.higher_is_member
        return self.kind != "loss"
