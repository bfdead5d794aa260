"""Reconstruction of training points from released weights (informed and weak adversaries),
one per file."""

from privlab.attacks.reconstruction import (  # noqa: F401  (registration)
    closed_form,
    informed,
    weak_adversary,
)
