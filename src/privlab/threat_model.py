"""What the attacker may touch (Target, Access) and what it knows (Knowledge).

A :class:`Target` wraps a trained model and answers only the queries its ``access`` allows;
anything more raises :class:`AccessDenied` naming the missing access. Attacks declare what
they ``require`` and are refused up front when the target does not grant it.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privlab.data.bundle import Split


class Access(enum.Flag):
    """Queries a target can answer. Combine with ``|``."""

    NONE = 0
    LABELS = enum.auto()  # predicted label only
    PROBS = enum.auto()  # softmax prediction vector F(x)
    LOGITS = enum.auto()  # pre-softmax scores g(x)
    LOSS = enum.auto()  # per-example loss ℓ(F(x), y)
    INPUT_GRADIENTS = enum.auto()  # white-box gradients w.r.t. inputs (PGD)
    WEIGHTS = enum.auto()  # released parameters
    PARAM_GRADIENTS = enum.auto()  # gradients w.r.t. parameters (federated learning)

    @classmethod
    def parse(cls, names: list[str] | tuple[str, ...]) -> Access:
        flag = cls.NONE
        for name in names:
            try:
                flag |= cls[name.upper()]
            except KeyError:
                valid = ", ".join(m.name.lower() for m in cls if m.name and m is not cls.NONE)
                raise ValueError(f"unknown access {name!r}; valid: {valid}") from None
        return flag

    @classmethod
    def all(cls) -> Access:
        """Every query (the attacker's own models)."""
        flag = cls.NONE
        for member in cls:
            flag |= member
        return flag

    def names(self) -> list[str]:
        return [m.name.lower() for m in Access if m.name and m in self and m is not Access.NONE]


class AccessDenied(PermissionError):
    """The target does not grant a query the caller needs."""


@dataclass(frozen=True)
class TargetInfo:
    """Public facts about a target (Kerckhoffs): architecture-independent, no data."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] = (0.0, 1.0)
    eps: float | None = None  # perturbation budget the model was trained for, if any
    norm: Literal["linf", "l2"] = "linf"
    verifier: str | None = None  # bound propagation the model was trained with, if any


class Target:
    """A deployed model seen through a declared access."""

    def __init__(
        self,
        model: nn.Module,
        info: TargetInfo,
        access: Access,
        *,
        device: torch.device | str = "cpu",
        temperature: float = 1.0,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self._model = model.to(device).eval()
        for p in self._model.parameters():
            p.requires_grad_(False)
        self.info = info
        self.access = access
        self.device = torch.device(device)
        self.temperature = float(temperature)

    def require(self, needed: Access, who: str = "this query") -> None:
        missing = needed & ~self.access
        if missing:
            raise AccessDenied(
                f"{who} needs access {missing.names()} but target {self.info.name!r} grants only "
                f"{self.access.names() or ['nothing']}"
            )

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._model(x.to(self.device)) / self.temperature

    @torch.no_grad()
    def _batched(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        return torch.cat(
            [self._logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.require(Access.LOGITS, "logits()")
        return self._batched(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax prediction vectors F(x) (temperature applied), in float64.

        In float32 a confident prediction rounds to exactly 1.0, which turns many members into
        ties and hides what an attack could tell apart at low false-positive rates.
        """
        self.require(Access.PROBS, "predict_proba()")
        return self._batched(x).double().softmax(dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.access & (Access.LABELS | Access.PROBS | Access.LOGITS):
            self.require(Access.LABELS, "predict()")
        return self._batched(x).argmax(dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy (float64); derivable from PROBS, so either grant suffices."""
        if not self.access & Access.PROBS:
            self.require(Access.LOSS, "loss()")
        return F.cross_entropy(self._batched(x).double(), y.to(self.device), reduction="none")

    def differentiable_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits with a graph back to ``x`` (white-box input gradients, e.g. for PGD)."""
        self.require(Access.INPUT_GRADIENTS, "input gradients")
        return self._logits(x)

    @torch.no_grad()
    def verified_worst_case_logits(
        self, x: torch.Tensor, y: torch.Tensor, eps: float, verifier: str
    ) -> torch.Tensor:
        """ẑ_j = −lower(z_y − z_j) over B_ε(x) from ``verifier`` (temperature applied): the
        logits of the verified worst case. Bound propagation needs the weights (WEIGHTS)."""
        from privlab.verify.verifiers import verified_worst_case_logits

        self.require(Access.WEIGHTS, "verified bounds")
        worst = verified_worst_case_logits(
            self._model,
            x.to(self.device),
            y.to(self.device),
            eps,
            self.info.value_range,
            verifier=verifier,
        )
        return worst / self.temperature

    def parameters(self) -> dict[str, torch.Tensor]:
        self.require(Access.WEIGHTS, "parameters()")
        return {k: v.detach().clone() for k, v in self._model.state_dict().items()}

    def module_for_simulation(self, device: torch.device | str | None = None) -> nn.Module:
        """A private copy of the model, weights included, on ``device`` (default: the
        target's), for an attacker who computes with the released weights: simulating a
        client's update at chosen inputs (gradient inversion), reading a layer's weights.

        Needs WEIGHTS, as :meth:`parameters` does. The copy is the raw module (no
        temperature), in eval mode, its parameters not requiring gradients; whatever the
        caller does to it (hooks, moves) leaves the target untouched."""
        self.require(Access.WEIGHTS, "module_for_simulation()")
        return copy.deepcopy(self._model).to(self.device if device is None else device)

    def architecture(self) -> nn.Module:
        """The model's structure without its values: a copy on the ``meta`` device (module
        types, parameter names and shapes; nothing to compute with).

        Needs no access: every threat model here assumes the attacker knows the architecture
        (Kerckhoffs; shadow and reference models are built on it), only the trained values
        are guarded."""
        return copy.deepcopy(self._model).to("meta")


@dataclass(frozen=True)
class LabelledQueries:
    """Examples with known membership for one model the attacker can query.

    Either the target itself with a few revealed members/non-members (Song §5.2.5: 500 + 500
    per class) or a shadow model trained by the attacker on its own population data.
    """

    target: Target
    members: Split
    nonmembers: Split
    source: Literal["known", "shadow"] = "shadow"


class ReferenceModels:
    """K models the attacker trained itself, with the membership of every pool example.

    ``masks[k, i]`` says whether ``pool[i]`` was in model k's training set. ``online`` pools
    hold the audited candidates too (each candidate is IN for some models and OUT for others);
    offline pools hold only the attacker's population, so every candidate is OUT everywhere.
    ``membership(x)`` looks queried examples up in the pool by content.
    """

    def __init__(
        self, targets: list[Target], pool: Split, masks: np.ndarray, *, online: bool
    ) -> None:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != (len(targets), len(pool)):
            raise ValueError(
                f"masks must have shape (models, pool) = {(len(targets), len(pool))}, "
                f"got {masks.shape}"
            )
        self.targets = tuple(targets)
        self.pool = pool
        self.masks = masks
        self.online = online
        self._index: dict[bytes, int] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    @staticmethod
    def _key(x: torch.Tensor, y: torch.Tensor) -> list[bytes]:
        rows = x.detach().cpu().float().reshape(len(x), -1).numpy()
        labels = y.detach().cpu().numpy()
        return [
            r.tobytes() + int(c).to_bytes(4, "little") for r, c in zip(rows, labels, strict=True)
        ]

    def pool_index(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Index of each (x, y) in the pool, −1 where the example is not in it."""
        if self._index is None:
            self._index = {}
            for i, key in enumerate(self._key(self.pool.x, self.pool.y)):
                self._index.setdefault(key, i)
        return np.array([self._index.get(k, -1) for k in self._key(x, y)], dtype=np.int64)

    def membership(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """K × n booleans: was example j in model k's training set (False outside the pool)."""
        idx = self.pool_index(x, y)
        out = np.zeros((len(self), len(idx)), dtype=bool)
        found = idx >= 0
        out[:, found] = self.masks[:, idx[found]]
        return out


@dataclass(frozen=True)
class Knowledge:
    """What the attacker knows besides the target's answers."""

    population: Split | None = None
    reference: tuple[LabelledQueries, ...] = field(default=())
    reference_models: ReferenceModels | None = None
