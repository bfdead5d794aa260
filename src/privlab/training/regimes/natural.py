"""Natural training: empirical risk minimisation with cross-entropy (Song et al. Eq. 3)."""

from __future__ import annotations

import dataclasses

from privlab.registry import REGIMES
from privlab.training.regime import Regime


@REGIMES.register("natural")
@dataclasses.dataclass(frozen=True, kw_only=True)
class Natural(Regime):
    """Undefended baseline: minimise mean cross-entropy on the training set."""

    name = "natural"
