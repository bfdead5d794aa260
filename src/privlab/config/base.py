"""Building blocks of every study's config section: strict models, registered components by
name, the data section, attack entries and the name checks against the registries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from privlab.registry import ATTACKS, DATASETS, Registry


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


class TrainConfig(_Strict):
    """Optimisation settings shared by every regime: the one copy of the training fields
    (the training loop takes this model as its ``TrainSpec``)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = 0.9
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    #: stop at the first epoch whose accuracy on a held-out ``validation`` fraction of the
    #: training data reaches this: defences compared at matched accuracy (AT-AT replication)
    stop_at_accuracy: float | None = Field(None, gt=0, le=1)
    validation: float = Field(0.2, gt=0, lt=1)

    def recipe(self) -> dict[str, Any]:
        """The settings as cache-key data (early-stopping keys only when it is on, so models
        cached before it existed keep their keys)."""
        data = self.model_dump()
        if self.stop_at_accuracy is None:
            del data["stop_at_accuracy"], data["validation"]
        return data


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


def dataset_name(field: str) -> Any:
    """A field validator that the value is a registered dataset (for sections that name a
    dataset by a plain string)."""

    def check(cls: Any, value: str) -> str:
        _check_name(DATASETS, value, field)
        return value

    return field_validator(field)(classmethod(check))
