"""Model-inversion attacks: white-box, class-conditional reconstruction of what a class looks like.

An attack ``invert(target, classes, prior=…, seed=…)`` returns a :class:`Reconstruction`: images
the attacker claims carry each class's private features, with the class they claim and the
target's confidence in it. Attacks declare the access they need (logits and input gradients)
and whether they need a generative prior trained on public data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from privlab.models.vae import VAE
from privlab.threat_model import Access, Target


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """Images claimed to represent ``labels`` (one class per row), best first within a class."""

    images: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor  # the target's softmax probability of the claimed class
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.labels) == len(self.confidence):
            raise ValueError("images, labels and confidence must have one row each")


def check_classes(
    classes: Sequence[int] | None, num_classes: int, names: Sequence[str] = ()
) -> list[int]:
    """The classes to attack (all when None); an unknown class is an error naming the valid ones."""
    if classes is None:
        return list(range(num_classes))
    bad = [c for c in classes if not (isinstance(c, int) and 0 <= c < num_classes)]
    if bad:
        shown = (
            ", ".join(f"{i} ({n})" for i, n in enumerate(names))
            if names
            else f"0–{num_classes - 1}"
        )
        raise ValueError(f"unknown class(es) {bad}; the target's classes are {shown}")
    if not classes:
        raise ValueError("no class to attack: give at least one class")
    return list(dict.fromkeys(int(c) for c in classes))


@dataclasses.dataclass(kw_only=True)
class InversionAttack:
    """Base class; subclasses are dataclasses whose fields are the attack's hyperparameters."""

    name: ClassVar[str] = "inversion_attack"
    family: ClassVar[str] = "inversion"
    requires: ClassVar[Access] = Access.LOGITS | Access.INPUT_GRADIENTS
    needs_prior: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    needs_reference_models: ClassVar[bool] = False
    per_class: int = 5  # images kept per class after the final selection

    def invert(
        self,
        target: Target,
        classes: Sequence[int] | None = None,
        *,
        prior: VAE | None = None,
        seed: int = 0,
    ) -> Reconstruction:
        target.require(self.requires, f"attack {self.name!r}")
        chosen = check_classes(
            classes, target.info.num_classes, getattr(target.info, "class_names", ())
        )
        if self.needs_prior and prior is None:
            raise ValueError(
                f"attack {self.name!r} needs a generative prior trained on public data"
            )
        if self.per_class < 1:
            raise ValueError(f"per_class must be ≥ 1, got {self.per_class}")
        return self._invert(target, chosen, prior, seed)

    def _invert(
        self, target: Target, classes: list[int], prior: VAE | None, seed: int
    ) -> Reconstruction:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def confidence_of(target: Target, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The target's probability of ``labels`` (white-box logits, no graph)."""
    with torch.no_grad():
        probs = target.differentiable_logits(x).softmax(1)
    return probs.gather(1, labels.to(probs.device)[:, None])[:, 0].cpu()


def top_per_class(labels: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores of every class, classes in order, best first."""
    keep = []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero()[:, 0]
        keep.append(idx[scores[idx].argsort(descending=True)[:k]])
    return torch.cat(keep)
