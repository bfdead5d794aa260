"""Model-inversion attacks (class-conditional, white-box), one per file."""

from privlab.attacks.inversion import gmi, mi_face, ppa  # noqa: F401  (registration)
from privlab.attacks.inversion.base import InversionAttack, Reconstruction, check_classes

__all__ = ["InversionAttack", "Reconstruction", "check_classes"]
