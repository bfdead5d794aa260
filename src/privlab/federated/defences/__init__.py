"""Defences against gradient inversion in federated learning, one per file, registered in
``DEFENCES`` (see :mod:`privlab.federated.defences.base` for the interface)."""

from privlab.federated.defences import (  # noqa: F401  (registration)
    dp_sgd,
    dropout,
    gaussian_noise,
    none,
    pruning,
    quantisation,
    secure_aggregation,
)
from privlab.federated.defences.base import DEFENCES, Defence, defended_update
from privlab.federated.defences.dp_sgd import DPSGD
from privlab.federated.defences.dropout import Dropout
from privlab.federated.defences.gaussian_noise import GaussianNoise
from privlab.federated.defences.none import NoDefence
from privlab.federated.defences.pruning import Pruning
from privlab.federated.defences.quantisation import Quantisation
from privlab.federated.defences.secure_aggregation import SecureAggregation

__all__ = [
    "DEFENCES",
    "DPSGD",
    "Defence",
    "Dropout",
    "GaussianNoise",
    "NoDefence",
    "Pruning",
    "Quantisation",
    "SecureAggregation",
    "defended_update",
]
