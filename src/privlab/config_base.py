"""Building blocks shared by every experiment schema: strict models, registered components by
name, the data section, attack entries and the name checks (imported by :mod:`privlab.config`
and the schemas of the other experiment kinds)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from privlab.registry import ATTACKS, Registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    """A registered component by name with keyword parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DataConfig(Component):
    members: float | None = None  # fraction (≤ 1) or count (> 1); dataset default if None
    nonmembers: float | None = None
    population: float | None = None
    #: keep only these classes (relabelled 0..k−1 in this order), e.g. the private identities
    classes: list[int] | None = Field(None, min_length=1)


class AttackConfig(Component):
    label: str | None = None  # display name, e.g. "I_A"

    @property
    def display(self) -> str:
        return self.label or self.name


class KindConfig(_Strict):
    """What every ``kind:`` of experiment shares: its name, seed, device and model cache."""

    name: str = "experiment"
    description: str = ""
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None


def check_unique(names: list[str], what: str, hint: str = "") -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {dupes}{hint}")


def _check_name(registry: Registry[Any], name: str, where: str) -> None:
    if name not in registry:
        raise ValueError(
            f"{where}: unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}"
        )


def _check_family(name: str, family: str, where: str) -> None:
    _check_name(ATTACKS, name, where)
    if getattr(ATTACKS.get(name), "family", "membership") != family:
        valid = [n for n in ATTACKS.names() if getattr(ATTACKS.get(n), "family", "") == family]
        raise ValueError(f"{where}: {name!r} is not a {family} attack; {family} attacks: {valid}")
