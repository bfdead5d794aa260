"""The user's own architecture as a registered model: the callable ``NAME`` of ``FILE.py`` (the
only user code privlab imports, because the user named it), a ``torch.export`` program
(``FILE.pt2``, no code; its weights come with it), or a module handed to
:func:`privlab.audit` (``memory:<key>``)."""

from __future__ import annotations

from torch import nn

from privlab.registry import MODELS


@MODELS.register("user_model")
def user_model(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    spec: str,
    weights: str | None = None,
    given: bool = False,
) -> nn.Module:
    """The user's model: ``spec`` is ``FILE.py:NAME`` (a callable returning a freshly
    initialised nn.Module), ``FILE.pt2`` (an exported program) or ``memory:<key>``.
    ``given``: the audited model itself (``weights`` loaded, if any); otherwise a fresh
    model of the same architecture, for shadow and reference models."""
    from privlab.auditing import memory
    from privlab.auditing.model_loading import load_user_model

    del input_shape, num_classes  # checked against the data by privlab.auditing.checks
    if spec.startswith("memory:"):
        return memory.build(spec, fresh=not given)
    return load_user_model(spec, weights if given else None)
