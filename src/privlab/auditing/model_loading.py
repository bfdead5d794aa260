"""Load the model a user wants audited: their own code and weights, or a ``torch.export`` program.

Two forms of ``spec``:

- ``FILE.py:NAME``: the user's file is imported by path (their own code, run only because they
  named it) and ``NAME`` is called; it must return an ``nn.Module`` (or be an ``nn.Module``
  class or instance). Optional ``weights``: a ``.safetensors`` file, or a torch state dict
  that loads with ``torch.load(..., weights_only=True)``; any other pickle is refused.
- ``FILE.pt2``: a program saved by ``torch.export.save``; it needs no code. Every pickled
  member of the archive must load with ``weights_only=True`` before ``torch.export.load``
  (which unpickles without that restriction) is allowed to read it.

Every problem is one :class:`AuditInputError` naming the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from privlab.auditing.errors import AuditInputError, describe

#: keys under which training scripts commonly nest the state dict in a checkpoint
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict")
#: members of a .pt2 archive that are plain text (JSON, versions), never unpickled
_PT2_TEXT_MEMBERS = re.compile(
    r"(\.json|/archive_format|/archive_version|/version|/byteorder|/serialization_id)$"
)


def load_user_model(spec: str, weights: str | Path | None = None) -> nn.Module:
    """The model ``spec`` names (``FILE.py:NAME`` in eval mode, or ``FILE.pt2`` as exported).

    Checks: the file exists and imports (or is a loadable, pickle-safe export); ``NAME``
    yields an ``nn.Module``; ``weights`` (only with ``FILE.py:NAME``) load without unsafe
    pickles, fit the architecture tensor by tensor and are finite; without weights, the
    model's own tensors are finite.
    """
    spec = str(spec)
    if spec.lower().endswith(".pt2"):
        if weights is not None:
            raise AuditInputError(
                weights, "a .pt2 program carries its own weights; pass no weights file with it"
            )
        model = _load_pt2(Path(spec))
        check_finite_state(model.state_dict(), spec)
        return model  # its train / eval behaviour was fixed at export (mode switches are refused)
    source, name = _split_spec(spec)
    model = _build_model(_import_user_file(source), name, source)
    if weights is None:
        check_finite_state(model.state_dict(), source)
    else:
        load_weights_into(model, Path(weights))
    return model.eval()


def _split_spec(spec: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` → (FILE.py, NAME); anything else is an error saying the two forms."""
    source, colon, name = spec.rpartition(":")
    if not colon or not source.lower().endswith(".py") or not name.isidentifier():
        raise AuditInputError(
            spec, "expected FILE.py:NAME (a callable returning an nn.Module) or FILE.pt2"
        )
    path = Path(source)
    if not path.is_file():
        raise AuditInputError(path, "model file not found")
    return path, name


def _import_user_file(path: Path) -> ModuleType:
    """Import the user's file by path under a private module name (its folder is on
    ``sys.path`` while it runs, so it can import its neighbours)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"privlab_user_model_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AuditInputError(path, "cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and torch.export look classes up here
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        sys.modules.pop(module_name, None)
        raise AuditInputError(path, f"importing it raised {describe(err)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _build_model(module: ModuleType, name: str, path: Path) -> nn.Module:
    """``module.NAME`` as a model: an instance is used as is, a class or function is called
    with no arguments and must return an ``nn.Module``."""
    if not hasattr(module, name):
        raise AuditInputError(path, f"defines no {name!r}")
    obj = getattr(module, name)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise AuditInputError(
            path, f"{name} is of type {type(obj).__name__}, not a callable returning an nn.Module"
        )
    try:
        model = obj()
    except Exception as err:
        raise AuditInputError(path, f"{name}() raised {describe(err)}") from None
    if not isinstance(model, nn.Module):
        raise AuditInputError(
            path, f"{name}() returned an object of type {type(model).__name__}, not an nn.Module"
        )
    return model


# ---------------------------------------------------------------- weights


def torch_load_safely(path: Path, what: str) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; a pickle that needs more (custom
    classes, arbitrary code) is refused, naming the file and the first global it asked for."""
    if not path.is_file():
        raise AuditInputError(path, f"{what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, a corrupt archive, EOF, ...
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        if found is None:
            raise AuditInputError(path, f"unreadable {what} file ({describe(err)})") from None
        reason = found.group(1).strip().rstrip(".")
        raise AuditInputError(
            path,
            f"refused: a pickle that does not load with weights_only=True ({reason}); "
            "save plain tensors (a state dict) or safetensors",
        ) from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors in a ``.safetensors`` file or a weights-only torch state dict (a
    checkpoint dict with the state dict under ``state_dict`` / ``model_state_dict`` too)."""
    if path.suffix.lower() == ".safetensors":
        if not path.is_file():
            raise AuditInputError(path, "weights file not found")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise AuditInputError(path, f"corrupt safetensors file ({describe(err)})") from None
    obj = torch_load_safely(path, "weights")
    if isinstance(obj, Mapping):
        nested = [obj[k] for k in _NESTED_STATE_KEYS if isinstance(obj.get(k), Mapping)]
        obj = nested[0] if nested else obj
    if not isinstance(obj, Mapping) or not obj:
        raise AuditInputError(
            path, f"expected a state dict (tensor names → tensors), got {type(obj).__name__}"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise AuditInputError(
                path,
                f"entry {key!r} is of type {type(value).__name__}, not a tensor of a state dict",
            )
    return dict(obj)


def check_state_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Every tensor of ``model`` is in ``state`` with its shape, and nothing else is; the
    error names the first mismatch (missing, shape, then unexpected) and counts the rest."""
    own = model.state_dict()
    problems = []
    for name, tensor in own.items():
        if name not in state:
            problems.append(f"missing tensor {name!r} (shape {tuple(tensor.shape)})")
        elif tuple(state[name].shape) != tuple(tensor.shape):
            problems.append(
                f"tensor {name!r} has shape {tuple(state[name].shape)} in the file "
                f"but {tuple(tensor.shape)} in the model"
            )
    problems += [
        f"unexpected tensor {name!r} (not in the model)" for name in state if name not in own
    ]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise AuditInputError(path, f"weights do not fit the model: {problems[0]}{more}")


def check_finite_state(state: Mapping[str, torch.Tensor], where: object) -> None:
    """No floating-point tensor holds NaN or inf; the error names the first that does."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise AuditInputError(
                where, f"tensor {name!r} holds {bad} NaN/inf value{'s' * (bad != 1)}"
            )


def load_weights_into(model: nn.Module, path: Path) -> None:
    """Read ``path``, check it fits ``model`` and is finite, then load it (strictly)."""
    state = read_weights(path)
    check_state_fits(model, state, path)
    check_finite_state(state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise AuditInputError(path, f"weights do not load ({describe(err)})") from None


# ---------------------------------------------------------------- torch.export programs


def _load_pt2(path: Path) -> nn.Module:
    """The module that runs the exported program in ``path``, after the archive's pickles
    have been checked and its one input found to have a dynamic batch dimension."""
    if not path.is_file():
        raise AuditInputError(path, "model file not found")
    check_pt2_archive(path)
    try:
        exported = torch.export.load(path)
    except Exception as err:
        raise AuditInputError(
            path, f"not a loadable torch.export program ({describe(err)})"
        ) from None
    _check_exported_input(exported, path)
    return exported.module()


def _raw_payloads(archive: zipfile.ZipFile) -> set[str]:
    """Archive paths of the weights and constants stored as raw bytes (read without pickle),
    from the archive's payload configs."""
    raw: set[str] = set()
    for name in archive.namelist():
        if not name.endswith("_config.json") or "/data/" not in name:
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
            folder = name.rpartition("/")[0]
            raw |= {f"{folder}/{m['path_name']}" for m in config.values() if not m["use_pickle"]}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise AuditInputError(
                archive.filename, f"corrupt payload config {name}: {err}"
            ) from None
    return raw


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive any member of which ``torch.export.load`` would unpickle
    unless it loads with ``weights_only=True``: every member that is neither text (JSON,
    versions) nor a raw tensor payload must load that way (custom objects, compiled code
    and unknown members are refused)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise AuditInputError(path, f"not a torch.export archive ({describe(err)})") from None
    with archive:
        raw = _raw_payloads(archive)
        for member in archive.infolist():
            name = member.filename
            if member.is_dir() or name in raw or _PT2_TEXT_MEMBERS.search(name):
                continue
            try:
                torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
            except Exception as err:
                raise AuditInputError(
                    path,
                    f"refused: archive member {name} does not load with weights_only=True "
                    f"({describe(err)[:200]})",
                ) from None


def _check_exported_input(exported: torch.export.ExportedProgram, path: Path) -> None:
    """The program takes one tensor whose first (batch) dimension is not fixed."""
    names = exported.graph_signature.user_inputs
    if len(names) != 1:
        raise AuditInputError(
            path, f"the program takes {len(names)} inputs; an audit needs exactly one (x)"
        )
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == names[0])
    value = node.meta.get("val")
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) == 0:
        raise AuditInputError(path, "the program's input is not a batched tensor")
    if isinstance(shape[0], int):
        raise AuditInputError(
            path,
            f"the program was exported for a fixed batch of {shape[0]}; export it with a "
            "dynamic batch dimension (dynamic_shapes={'x': {0: torch.export.Dim('batch')}})",
        )
