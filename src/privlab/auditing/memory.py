"""Models and training functions handed to :func:`privlab.audit` as Python objects, addressed
as ``memory:<key>`` model specs and ``memory-trainer:<key>`` trainer specs for the run (they
never leave the process; models are never modified). Configs carry only these strings."""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from privlab.auditing.errors import AuditInputError, describe

_MODELS: dict[str, nn.Module] = {}
_TRAINERS: dict[str, Trainer] = {}
_KEYS = itertools.count()

#: captured values that are part of a training function's identity (immutable, stable repr)
_CONSTANTS = (bool, int, float, complex, str, bytes, type(None))


def register(model: nn.Module) -> str:
    """Keep a private copy of ``model``; its spec for the ``user_model`` component."""
    key = f"memory:{id(model):x}-{len(_MODELS)}"
    _MODELS[key] = copy.deepcopy(model).cpu()
    return key


def build(spec: str, *, fresh: bool) -> nn.Module:
    """A copy of the registered model: with its weights, or (``fresh``) re-initialised under
    torch's current seed, for shadow and reference models of the same architecture."""
    if spec not in _MODELS:
        raise ValueError(f"{spec}: no such in-memory model (it lives only in the auditing process)")
    model = copy.deepcopy(_MODELS[spec])
    if fresh:
        with torch.no_grad():
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    return model


def release(spec: str) -> None:
    """Forget a registered model or training function."""
    _MODELS.pop(spec, None)
    _TRAINERS.pop(spec, None)


# ---------------------------------------------------------------- training functions


@dataclass
class Trainer:
    """A user's ``train_fn(x, y, seed) -> nn.Module`` and what identifies it across runs."""

    fn: Callable[..., Any]
    name: str  # its qualified name
    #: sha256 of its source, name and captured constants; None: its models are not cached
    identity: str | None
    why_not_cached: str = ""
    noted: bool = False  # the "not cached" line was logged (once per audit)

    @property
    def label(self) -> str:
        return f"train_fn {self.name}"


def register_trainer(fn: Callable[..., Any]) -> str:
    """Keep ``fn`` for the run; its spec for ``threat_model.trainer``."""
    if not callable(fn):
        raise ValueError(
            "train_fn must be a function train_fn(x, y, seed) -> nn.Module, "
            f"not {type(fn).__name__}"
        )
    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    name = getattr(inner, "__qualname__", None) or type(inner).__qualname__
    identity, why = trainer_identity(fn)
    key = f"memory-trainer:{id(fn):x}-{next(_KEYS)}"
    _TRAINERS[key] = Trainer(fn, str(name), identity, why)
    return key


def trainer(spec: str) -> Trainer:
    if spec not in _TRAINERS:
        raise ValueError(
            f"{spec}: no such training function (it lives only in the auditing process: "
            "privlab.audit(train_fn=...))"
        )
    return _TRAINERS[spec]


def trainer_identity(fn: Callable[..., Any]) -> tuple[str | None, str]:
    """The sha256 of a plain function's qualified name, module, source and the immutable
    constants it reads (defaults, closure cells, module globals: ``EPOCHS = 40``), or None
    and why there is none (no source: a lambda typed into a REPL, a builtin, a partial, a
    callable object). Lists, dicts, modules and classes it uses are not part of it."""
    if not isinstance(fn, types.FunctionType):
        return None, f"a {type(fn).__name__} is not a plain function with source"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return None, "its source is not available"
    blob = {
        "name": fn.__qualname__,
        "module": fn.__module__,
        "source": source,
        "constants": _constants(fn),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest(), ""


def _is_constant(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_constant(v) for v in value)
    return isinstance(value, _CONSTANTS)


def _names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it (inner functions) read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _constants(fn: types.FunctionType) -> dict[str, str]:
    values: dict[str, Any] = {f"default {i}": v for i, v in enumerate(fn.__defaults__ or ())}
    values |= {f"default {k}": v for k, v in (fn.__kwdefaults__ or {}).items()}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            values[f"closure {name}"] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    values |= {f"global {n}": fn.__globals__[n] for n in _names(fn.__code__) if n in fn.__globals__}
    return {k: repr(v) for k, v in sorted(values.items()) if _is_constant(v)}


def train_with(
    spec: str, x: torch.Tensor, y: torch.Tensor, seed: int, into: nn.Module
) -> nn.Module:
    """``train_fn(x, y, seed)`` of ``spec`` (x float32, y int64, on the CPU; torch seeded with
    ``seed``), its weights checked (the architecture of ``into``, finite) and loaded into
    ``into``: a fresh copy of the audited model, returned on the CPU in eval mode. Anything
    else is an :class:`AuditInputError` naming the function and what went wrong."""
    fn = trainer(spec)
    x = x.detach().to("cpu", torch.float32).clone()
    y = y.detach().to("cpu", torch.int64).clone()
    torch.manual_seed(seed)
    try:
        model = fn.fn(x, y, seed)
    except Exception as err:
        problem = f"raised {describe(err)} (training on {len(y)} examples, seed {seed})"
        raise AuditInputError(fn.label, problem) from err
    if not isinstance(model, nn.Module):
        raise AuditInputError(fn.label, f"returned {type(model).__name__}, not an nn.Module")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_architecture(fn.label, state, into.state_dict())
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise AuditInputError(fn.label, f"returned non-finite (NaN/inf) weights in {bad[0]}")
    into.load_state_dict(state)
    return into.cpu().eval()


def check_architecture(
    label: str, state: dict[str, torch.Tensor], audited: dict[str, torch.Tensor]
) -> None:
    """Raise unless ``state`` has the audited model's tensor names and shapes (naming the
    first that differs)."""
    problem = ""
    for name, tensor in audited.items():
        if name not in state:
            problem = f"it has no {name}"
        elif tuple(state[name].shape) != tuple(tensor.shape):
            problem = f"its {name} has shape {tuple(state[name].shape)}, not {tuple(tensor.shape)}"
        if problem:
            break
    extra = [k for k in state if k not in audited]
    problem = problem or (f"it has {extra[0]}, which the audited model lacks" if extra else "")
    if problem:
        raise AuditInputError(
            label,
            f"returned a model unlike the audited one: {problem} "
            "(train_fn must return the audited model's architecture)",
        )
