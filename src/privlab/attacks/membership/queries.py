"""Augmented queries and true-class confidences for attacks that compare a target with
reference models on the same example (LiRA, RMIA).

Carlini et al. (2022, §VI) query each example under several label-preserving augmentations
and treat the answers as a vector: a model's confidence on the shifted (and, for natural
images, mirrored) copies of a training point carries extra membership signal. For image
inputs (C×H×W) the queries are, in order: the example itself, then one-pixel shifts (right,
left, down, up, then diagonals), each followed by its mirror image when ``flip`` is set.
Shifted-in pixels replicate the border.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from privlab.threat_model import Knowledge, ReferenceModels, Target

_SHIFTS = [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]


def max_queries(input_shape: tuple[int, ...], flip: bool) -> int:
    if len(input_shape) != 3:
        return 1
    return len(_SHIFTS) * (2 if flip else 1)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    if dy == dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


def augmented(x: torch.Tensor, queries: int, *, flip: bool = False) -> list[torch.Tensor]:
    """The first ``queries`` augmented copies of ``x`` (the first is ``x`` itself)."""
    available = max_queries(tuple(x.shape[1:]), flip)
    if not 1 <= queries <= available:
        raise ValueError(
            f"queries must be between 1 and {available} for inputs of shape "
            f"{tuple(x.shape[1:])} (flip={flip}); got {queries}"
        )
    views: list[torch.Tensor] = []
    for dy, dx in _SHIFTS:
        shifted = _shift(x, dy, dx)
        views.append(shifted)
        if flip:
            views.append(shifted.flip(-1))
    return views[:queries]


def true_class_probs(
    target: Target, x: torch.Tensor, y: torch.Tensor, queries: int, *, flip: bool = False
) -> np.ndarray:
    """n × Q true-class probabilities (float64) of ``target`` on the augmented queries."""
    cols = []
    for view in augmented(x, queries, flip=flip):
        probs = target.predict_proba(view)
        cols.append(probs.gather(1, y.to(probs.device).view(-1, 1)).squeeze(1).cpu().numpy())
    return np.stack(cols, axis=1)


def logit_scaled(
    target: Target, x: torch.Tensor, y: torch.Tensor, queries: int, *, flip: bool = False
) -> np.ndarray:
    """n × Q values of φ = log p_y − log Σ_{j≠y} p_j (Carlini et al. Eq. 4), computed without
    cancellation: the probabilities are float64 and the wrong-class mass is summed directly."""
    cols = []
    for view in augmented(x, queries, flip=flip):
        probs = target.predict_proba(view)
        true = F.one_hot(y.to(probs.device), probs.shape[1]).bool()
        p_true = probs[true]
        p_rest = probs.masked_fill(true, 0.0).sum(dim=1)
        cols.append((p_true.clamp_min(1e-300).log() - p_rest.clamp_min(1e-300).log()).cpu().numpy())
    return np.stack(cols, axis=1)


def check_mode(mode: str) -> None:
    if mode not in ("online", "offline"):
        raise ValueError(f"unknown mode {mode!r}; use online or offline")


def usable_reference_models(attack: str, mode: str, knowledge: Knowledge) -> ReferenceModels:
    """The attacker's reference models, refused when an online attack needs candidates IN."""
    refs = knowledge.reference_models
    if refs is None:
        raise ValueError(
            f"attack {attack!r} needs reference models; set threat_model.reference_models"
        )
    if mode == "online" and not refs.online:
        raise ValueError(
            f"online {attack} needs reference models trained on the audited candidates; set "
            "threat_model.reference_models.online: true or use mode: offline"
        )
    return refs
