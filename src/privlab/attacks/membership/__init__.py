"""Membership inference attacks, one per file."""

from privlab.attacks.membership import (  # noqa: F401  (registration)
    adversarial_confidence,
    augmentation_labels,
    boundary_distance,
    confidence,
    gap,
    inference_network,
    lira,
    loss_threshold,
    rmia,
    shokri,
    verified_confidence,
)
