"""Small model surgery shared by regimes and metrics: find and replace the logit layer."""

from __future__ import annotations

from torch import nn


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the model's last ``nn.Linear`` (the logit layer)."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to replace")
    return found[-1]


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at qualified ``name`` (kept in place inside an ``nn.Sequential``)."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
