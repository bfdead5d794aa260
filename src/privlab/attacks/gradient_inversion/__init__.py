"""Gradient inversion in federated learning (Liu et al. 2025's attack family), one per file."""

from privlab.attacks.gradient_inversion import (  # noqa: F401  (registration)
    analytic_fc,
    dlg,
    feature_matching,
    inverting_gradients,
)
