"""The one experiment schema: a header (name, seeds, device, cache) and one optional section
per registered study (``STUDIES``), each validated by the study's own pydantic model.

Configs are data, never code: YAML is parsed with ``yaml.safe_load`` and every key is checked;
a typo is an error naming it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from privlab.config.base import _Strict
from privlab.config.migrate import legacy_problem
from privlab.config.overrides import apply_overrides
from privlab.config.yaml_text import read_yaml_file
from privlab.registry import STUDIES


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names the offending key."""


class ExperimentHeader(_Strict):
    """What every experiment has, whatever its studies: name, seeds, device, model cache."""

    name: str = "experiment"
    description: str = ""
    seed: int = Field(0, ge=0)
    #: several: every study runs per seed
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)
    device: str = "auto"
    cache_dir: str | None = None
    #: where the studies' independent units run (privlab.run.backend): here, or on Ray
    backend: Literal["local", "ray"] = "local"
    address: str | None = None  # a Ray cluster's address ("auto": the running one)

    @model_validator(mode="after")
    def _one_study(self) -> ExperimentHeader:
        if not self.studies():
            raise ValueError(f"no study section; add at least one of: {', '.join(STUDIES)}")
        return self

    def run_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    def studies(self) -> dict[str, BaseModel]:
        """The sections present, by study name."""
        return {
            name: value
            for name in STUDIES.names()
            if isinstance(value := getattr(self, name, None), BaseModel)
        }

    def section(self, name: str) -> Any:
        """The section of study ``name`` (None when absent)."""
        return getattr(self, name, None)


@cache
def _schema(names: tuple[str, ...]) -> type[ExperimentHeader]:
    fields: dict[str, Any] = {name: (STUDIES.build(name).section | None, None) for name in names}
    return create_model("ExperimentConfig", __base__=ExperimentHeader, **fields)


def experiment_schema() -> type[ExperimentHeader]:
    """The schema for the studies registered now (a study registered later extends it)."""
    return _schema(tuple(STUDIES.names()))


#: the experiment config type (the header's methods; sections are attributes by study name)
ExperimentConfig = ExperimentHeader


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key {where!r} (check its spelling)")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if where else msg)
    return "invalid experiment config:\n  " + "\n  ".join(lines)


def load_config_dict(data: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """Validate an experiment config given as plain data, after ``--set`` overrides."""
    problem = legacy_problem(data)
    if problem:
        raise ConfigError(problem)
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy as plain data
    try:
        apply_overrides(data, overrides or [])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        return experiment_schema().model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    try:
        data = read_yaml_file(path, "config")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML file (errors name the file and the key)."""
    data = read_yaml(path)
    try:
        return load_config_dict(data, overrides)
    except ConfigError as err:
        message = str(err).replace("privlab migrate-config FILE", f"privlab migrate-config {path}")
        raise ConfigError(f"{path}: {message}") from None
