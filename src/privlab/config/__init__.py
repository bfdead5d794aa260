"""Experiment configuration: one schema, a header plus one optional section per study."""

from privlab.config.base import AttackConfig, Component, DataConfig
from privlab.config.schema import (
    ConfigError,
    ExperimentConfig,
    ExperimentHeader,
    experiment_schema,
    load_config,
    load_config_dict,
)

__all__ = [
    "AttackConfig",
    "Component",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ExperimentHeader",
    "experiment_schema",
    "load_config",
    "load_config_dict",
]
