"""Shadow heads as the weak adversary reads them: stacked parameters in shards.

A shard is a dict of tensors for K heads: ``param.<name>`` (K × that parameter's shape, one
row per head), ``indices`` (K × N pool indices of each head's training set) and ``labels``
(K × N, the labels each head was trained on). How shards are generated, stored and checked is
the study's business (:mod:`privlab.studies.reconstruction.shadow_heads`); the attack receives
a :class:`ShadowHeads`: what the heads were trained for, and a way to read the shards, one at a
time, as often as it needs (memory stays bounded by one shard).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Literal

import torch

Shard = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShadowHeads:
    """A finished set of shadow heads.

    ``classes``: size of the reconstructor's one-hot class input; ``target_classes``: the
    classes whose training images are reconstructed; ``task``: ``"balanced"`` (the pool labels
    are the heads' classes) or ``"one_vs_rest"`` (the pool labels are identities, the heads are
    binary and class 1 is a set's positive identity); ``read``: a fresh iterator over every
    shard on each call.
    """

    classes: int
    target_classes: tuple[int, ...]
    task: Literal["balanced", "one_vs_rest"] = "balanced"
    read: Callable[[], Iterator[Shard]]

    def __post_init__(self) -> None:
        if self.classes < 2 or not self.target_classes:
            raise ValueError("shadow heads need ≥ 2 classes and at least one target class")
        bad = [c for c in self.target_classes if not 0 <= c < self.classes]
        if bad:
            raise ValueError(f"target classes {bad} are outside 0..{self.classes - 1}")

    def __iter__(self) -> Iterator[Shard]:
        return self.read()


def shard_weights(shard: Shard) -> torch.Tensor:
    """K × D_Θ: the flattened parameters of a shard's heads (in parameter-name order)."""
    return torch.cat(
        [v.reshape(len(v), -1).float() for k, v in sorted(shard.items()) if k.startswith("param.")],
        dim=1,
    )


def head_weights(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """1 × D_Θ: one head's parameters (a ``state_dict``, e.g. a released head's) laid out as
    :func:`shard_weights` lays out a shard's."""
    return shard_weights({f"param.{name}": v[None] for name, v in params.items()})
