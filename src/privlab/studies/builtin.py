"""The built-in studies (imported once by the registry so their registrations run)."""

from privlab.studies.gradient_inversion import study as gradient_inversion
from privlab.studies.reconstruction import study as reconstruction
from privlab.studies.scores import study as scores
from privlab.studies.targets import study as targets

__all__ = ["gradient_inversion", "reconstruction", "scores", "targets"]
