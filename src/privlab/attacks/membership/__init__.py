"""Membership inference attacks, one per file."""

from privlab.attacks.membership import (  # noqa: F401  (registration)
    adversarial_confidence,
    confidence,
    inference_network,
    lira,
    loss_threshold,
    rmia,
    shokri,
    verified_confidence,
)
