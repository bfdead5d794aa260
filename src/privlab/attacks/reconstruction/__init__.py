"""Reconstruction of training points from released weights (informed adversary), one per file."""

from privlab.attacks.reconstruction import closed_form  # noqa: F401  (registration)
