"""Every registry of named components in one place: datasets, models, regimes, attacks,
federated defences and studies.

Adding a component is one file with ``@REGISTRY.register("name")``; the CLI's ``list`` and the
contract tests pick it up from here. Adding an attack family is ``attacks/<family>/`` plus
``studies/<family>/`` and one ``@STUDIES.register``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """Raised for a name that no component was registered under."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A name → factory mapping with helpful errors."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        _load_builtin_components()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, /, **params: Any) -> T:
        """``factory(**params)``; a parameter the factory does not take is a TypeError that
        names it and lists the valid ones (a typo in a config's ``params``)."""
        factory = self.get(name)
        try:
            return factory(**params)
        except TypeError as err:
            valid = _parameter_names(factory)
            unknown = [k for k in params if valid is not None and k not in valid]
            if not unknown:
                raise TypeError(f"bad parameters for {self.kind} {name!r}: {err}") from err
            shown = ", ".join(valid or []) or "none"
            hints = [
                f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k)
                for k in unknown
                for close in [difflib.get_close_matches(k, valid or [], n=1)]
            ]
            noun = "parameter" if len(unknown) == 1 else "parameters"
            raise TypeError(
                f"bad parameters for {self.kind} {name!r}: unknown {noun} {', '.join(hints)}; "
                f"valid parameters: {shown}"
            ) from err

    def names(self) -> list[str]:
        _load_builtin_components()
        return sorted(self._entries)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a component of their own clean up with it)."""
        self._entries.pop(name, None)

    def describe(self, name: str) -> str:
        """First paragraph of the component's docstring, on one line."""
        doc = (self.get(name).__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    def __contains__(self, name: object) -> bool:
        _load_builtin_components()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _parameter_names(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword parameters ``factory`` accepts, in order (private ``_names`` left out);
    None when it takes ``**kwargs`` or has no signature to inspect."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in keyword and not p.name.startswith("_")]


DATASETS: Registry[Any] = Registry("dataset")
MODELS: Registry[Any] = Registry("model")
REGIMES: Registry[Any] = Registry("regime")
ATTACKS: Registry[Any] = Registry("attack")
DEFENCES: Registry[Any] = Registry("defence")  # federated clients' defences
STUDIES: Registry[Any] = Registry("study", "studies")  # one per attack family (studies.base)

#: every registry, in the order ``privlab list`` shows them
REGISTRIES: tuple[Registry[Any], ...] = (DATASETS, MODELS, REGIMES, ATTACKS, DEFENCES, STUDIES)

_loaded = False


#: packages whose modules register the built-in components when imported; loaded by name on
#: first use (as plugins are), so this module imports none of them
BUILTIN_PACKAGES = (
    "privlab.attacks",
    "privlab.data",
    "privlab.federated.defences",
    "privlab.models",
    "privlab.studies.builtin",
    "privlab.training.regimes",
)


def _load_builtin_components() -> None:
    """Import the built-in component packages once so their decorators run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in BUILTIN_PACKAGES:
        importlib.import_module(package)
