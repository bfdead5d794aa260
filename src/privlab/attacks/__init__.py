"""Attacks by family; importing this package registers every built-in attack."""

from privlab.attacks import gradient_inversion, inversion, membership, reconstruction  # noqa: F401
from privlab.attacks.base import MembershipAttack

__all__ = ["MembershipAttack"]
