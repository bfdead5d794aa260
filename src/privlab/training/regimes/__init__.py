"""Training regimes, one per file, registered by their literature names."""

from privlab.training.regimes import (  # noqa: F401  (registration)
    atat,
    bido,
    crown_ibp,
    dist_at,
    dp_sgd,
    drop_layer,
    ibp,
    label_smoothing,
    mid,
    natural,
    neg_ls,
    noise_layer,
    permuted_labels,
    pgd_at,
    tl_dmi,
    trades,
    trap_mid,
    zonotope,
)
