"""Federated learning: what a client sends and what an honest-but-curious server observes."""

from privlab.federated.client import client_update
from privlab.federated.observation import GradientObservation, check_observation

__all__ = ["GradientObservation", "check_observation", "client_update"]
