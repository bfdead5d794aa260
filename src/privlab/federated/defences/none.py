"""No defence: the server sees the client's update as computed (the undefended baseline)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from privlab.federated.defences.base import DEFENCES, Defence


@DEFENCES.register("none")
@dataclasses.dataclass(frozen=True, kw_only=True)
class NoDefence(Defence):
    """No defence: the exact gradient (or FedAvg pseudo-gradient) reaches the server.

    Batch size and local steps are the client's settings (``defended_update``'s options), so
    "none" with a larger batch or more local steps is how configs express those defences.
    """

    name: ClassVar[str] = "none"
