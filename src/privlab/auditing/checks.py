"""Check that a user's model and data fit each other before anything is attacked.

:func:`check_model_and_data` runs a deep copy of the model (never the user's object) on a
few members and checks the data of every split against it; it returns the
:class:`AuditShape` the audit's ``TargetInfo`` needs. Each problem is one
:class:`AuditInputError` naming the split; overlapping members and non-members are only
warned about (:class:`AuditDataWarning`), with the count.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from privlab.auditing.errors import AuditInputError, describe
from privlab.data.bundle import Split

#: members the model is run on
PROBE_SIZE = 8


class AuditDataWarning(UserWarning):
    """The data is auditable but probably not what the user meant (overlapping splits)."""


@dataclass(frozen=True)
class AuditShape:
    """What the checks found: the shape of one input, the model's class count, and the value
    range (declared, or the (min, max) over every split)."""

    input_shape: tuple[int, ...]
    num_classes: int
    value_range: tuple[float, float]


def check_model_and_data(
    model: nn.Module,
    members: Split,
    nonmembers: Split,
    population: Split | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
) -> AuditShape:
    """Check the model and the splits fit each other; return their :class:`AuditShape`.

    Checks, in order: every split is non-empty with float inputs and 1-D integer labels; every
    split's input shape is the members'; no NaN or inf in any split's inputs; the model (a
    deep copy, in eval mode, on ``device``) runs on a few members and returns finite
    (batch, classes) logits with classes ≥ 2; every label is in [0, classes); every value is
    inside ``value_range`` when declared. Warns when non-members repeat members exactly.
    """
    splits = {"members": members, "nonmembers": nonmembers}
    if population is not None:
        splits["population"] = population
    input_shape = tuple(members.x.shape[1:])
    for name, split in splits.items():
        _check_split(split, name, input_shape)
    num_classes = _probe(model, members.x[:PROBE_SIZE], torch.device(device))
    for name, split in splits.items():
        _check_labels(split.y, num_classes, name)
    found_range = _check_range(splits, value_range)
    _warn_overlap(members, nonmembers)
    return AuditShape(input_shape, num_classes, found_range)


def _check_split(split: Split, name: str, input_shape: tuple[int, ...]) -> None:
    """Non-empty, float inputs of the members' shape, all finite; 1-D integer labels."""
    if len(split) == 0:
        raise AuditInputError(name, "no examples")
    if not split.x.is_floating_point():
        raise AuditInputError(name, f"inputs have dtype {split.x.dtype}; expected floats")
    if split.y.ndim != 1 or split.y.is_floating_point() or split.y.dtype == torch.bool:
        raise AuditInputError(
            name,
            f"labels have dtype {split.y.dtype} and shape {tuple(split.y.shape)}; "
            "expected one integer class index per example",
        )
    if tuple(split.x.shape[1:]) != input_shape:
        raise AuditInputError(
            name,
            f"input shape {tuple(split.x.shape[1:])} does not match the members' {input_shape}",
        )
    finite = torch.isfinite(split.x).reshape(len(split), -1).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise AuditInputError(
            name, f"NaN or inf in {len(bad)} example(s) (first: row {int(bad[0])})"
        )


def _probe(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """The class count of a copy of ``model`` run on ``x``; the user's model is not touched."""
    try:
        with warnings.catch_warnings():  # torch's own deprecation notice on exported programs
            warnings.filterwarnings("ignore", ".*LeafSpec", FutureWarning)
            probe = copy.deepcopy(model)
    except Exception as err:
        raise AuditInputError("model", f"cannot be copied ({describe(err)})") from None
    try:
        probe = probe.to(device)
        with contextlib.suppress(NotImplementedError):  # an exported program's mode is fixed
            probe.eval()
        with torch.no_grad():
            out = probe(x.to(device))
    except Exception as err:
        raise AuditInputError(
            "model",
            f"forward raised {describe(err)} on members of shape {tuple(x.shape)}",
        ) from None
    if not isinstance(out, torch.Tensor):
        raise AuditInputError(
            "model", f"forward returned {type(out).__name__}; expected a tensor of logits"
        )
    if out.ndim != 2 or out.shape[0] != len(x) or out.shape[1] < 2:
        raise AuditInputError(
            "model",
            f"output shape {tuple(out.shape)} on {len(x)} members; expected "
            f"({len(x)}, classes) with at least 2 classes",
        )
    if not bool(torch.isfinite(out).all()):
        raise AuditInputError("model", "NaN or inf in its output on members")
    return int(out.shape[1])


def _check_labels(y: torch.Tensor, num_classes: int, name: str) -> None:
    """Every label is a class of the model: in [0, num_classes)."""
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        value = int(y[bad][0])
        raise AuditInputError(
            name,
            f"label {value} is outside [0, {num_classes}) (the model has {num_classes} "
            f"outputs); {int(bad.sum())} label(s) out of range",
        )


def _check_range(
    splits: dict[str, Split], declared: tuple[float, float] | None
) -> tuple[float, float]:
    """The declared range after checking every value lies in it, else the (min, max) found."""
    lows = {name: float(s.x.min()) for name, s in splits.items()}
    highs = {name: float(s.x.max()) for name, s in splits.items()}
    if declared is None:
        return min(lows.values()), max(highs.values())
    lo, hi = float(declared[0]), float(declared[1])
    if not lo < hi:
        raise AuditInputError("value_range", f"({lo}, {hi}) is empty; expected low < high")
    for name in splits:
        if lows[name] < lo or highs[name] > hi:
            raise AuditInputError(
                name,
                f"values in [{lows[name]:.6g}, {highs[name]:.6g}] fall outside the declared "
                f"input range [{lo:.6g}, {hi:.6g}]",
            )
    return lo, hi


def _row_digests(x: torch.Tensor) -> list[bytes]:
    rows = x.detach().cpu().contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _warn_overlap(members: Split, nonmembers: Split) -> None:
    """Warn with the count of non-members whose input exactly repeats a member's."""
    seen = set(_row_digests(members.x))
    repeats = sum(d in seen for d in _row_digests(nonmembers.x))
    if repeats:
        warnings.warn(
            f"{repeats} of {len(nonmembers)} non-members are exact copies of members' inputs; "
            "they are scored as non-members although the model was trained on them",
            AuditDataWarning,
            stacklevel=3,
        )
