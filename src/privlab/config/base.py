"""Building blocks of every study's config section: strict models, registered components by
name, the data section, attack entries and the name checks against the registries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


class Swept(Component):
    """A registered component with fixed ``params`` and optionally one parameter swept over
    ``sweep: {parameter: [values]}``: the one sweep form of every config. A swept regime of a
    target or a swept membership attack becomes one target / attack per value (named
    ``"<name> <parameter>=<value>"``); a swept federated defence stays one defence whose
    values are its strengths, weakest to strongest."""

    label: str | None = None
    sweep: dict[str, list[Any]] | None = None

    @model_validator(mode="after")
    def _check_sweep(self) -> Swept:
        if self.sweep is not None:
            if len(self.sweep) != 1:
                raise ValueError(
                    f"sweep takes exactly one parameter, got {sorted(self.sweep) or 'none'}"
                )
            (param, values) = next(iter(self.sweep.items()))
            if not values:
                raise ValueError(f"sweep.{param}: give at least one value")
            if param in self.params:
                raise ValueError(f"{param!r} is both in params and swept")
        return self

    @property
    def display(self) -> str:
        return self.label or self.name

    def points(self) -> list[tuple[int, dict[str, Any], str]]:
        """(rank, full parameters, label) for every value of the sweep, in order."""
        if self.sweep is None:
            return [(0, dict(self.params), self.display)]
        (param, values) = next(iter(self.sweep.items()))
        return [
            (rank, {**self.params, param: value}, f"{self.display} {param}={value}")
            for rank, value in enumerate(values)
        ]


def expand_sweep(entry: Any, component: str | None, name_key: str, where: str) -> list[Any]:
    """One raw config entry per value of the sweep of ``entry`` (or of its ``component``
    key), each named ``"<name> <parameter>=<value>"`` under ``name_key``; entries without a
    sweep (or not mappings: pydantic reports those) are returned as they are."""
    if not isinstance(entry, dict):
        return [entry]
    raw = entry.get(component) if component else entry
    if not isinstance(raw, dict) or raw.get("sweep") is None:
        return [entry]
    try:
        swept = Swept.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {problem}") from None
    base = {k: v for k, v in raw.items() if k not in ("sweep", "label")}
    name = str(entry.get(name_key) or swept.display)
    out = []
    for _, params, _ in swept.points():
        (param, _values) = next(iter(swept.sweep.items()))  # type: ignore[union-attr]
        fixed = base | {"params": params}
        suffix = f" {param}={params[param]}"
        outer = entry | {component: fixed} if component else fixed
        out.append(outer | {name_key: name + suffix})
    return out


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
