"""What the attacker of a target has and may do: the access check of every attack, the
reference models it trains, its shadow and revealed data, and the members' loss histogram."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from privlab.config.base import AttackConfig
from privlab.config.schema import ConfigError
from privlab.data.bundle import DataBundle, Split, stratified_split
from privlab.data.from_config import bundle_from_config
from privlab.metrics.utility import per_example_loss
from privlab.registry import ATTACKS
from privlab.studies.targets.config import ReferenceModelsConfig, TargetsConfig
from privlab.studies.targets.membership import build_attack
from privlab.threat_model import Access


def load_bundle(config: TargetsConfig, seed: int) -> DataBundle:
    return bundle_from_config(config.data, seed)


def check_access(config: TargetsConfig) -> Access:
    """Refuse, before any training, attacks that need more than the declared access."""
    try:
        access = Access.parse(config.threat_model.access)
    except ValueError as err:
        raise ConfigError(f"threat_model.access: {err}") from None
    refs = reference_models_config(config)
    for i, cfg in enumerate(config.attacks):
        attack = _granted(cfg, f"attacks.{i}", access)
        if attack.needs_reference and config.threat_model.reference == "none":
            raise ConfigError(
                f"attacks.{i} ({cfg.display}) trains on reference data; set "
                "threat_model.reference to 'shadow' or 'known'"
            )
        if getattr(attack, "mode", None) == "online" and refs is not None and not refs.online:
            raise ConfigError(
                f"attacks.{i} ({cfg.display}) is online: it needs reference models trained on "
                "the audited candidates; set threat_model.reference_models.online: true or the "
                "attack's mode: offline"
            )
    for i, cfg in enumerate(config.inversion.attacks if config.inversion else []):
        _granted(cfg, f"inversion.attacks.{i}", access)
    return access


def _granted(cfg: AttackConfig, where: str, access: Access) -> Any:
    """Build the attack of ``cfg``; a bad parameter or missing access is a ConfigError."""
    try:
        attack = build_attack(cfg)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} ({cfg.display}): {err}") from None
    missing = attack.requires & ~access
    if missing:
        raise ConfigError(
            f"{where} ({cfg.display}) needs access {missing.names()} but "
            f"threat_model.access grants only {access.names()}"
        )
    return attack


def reference_models_config(config: TargetsConfig) -> ReferenceModelsConfig | None:
    """The reference models to train: the configured ones, defaults when an attack needs them."""
    if config.threat_model.reference_models is not None:
        return config.threat_model.reference_models
    needed = any(
        getattr(ATTACKS.get(a.name), "needs_reference_models", False) for a in config.attacks
    )
    return ReferenceModelsConfig() if needed else None


def split_reference(
    bundle: DataBundle, config: TargetsConfig, seed: int
) -> tuple[Split, Split, Split | None, Split | None]:
    """Evaluation members/non-members, and the revealed ones when reference = 'known'."""
    if config.threat_model.reference != "known":
        return bundle.members, bundle.nonmembers, None, None
    k = config.threat_model.known_per_class
    rng = np.random.default_rng(seed + 7)
    parts = []
    for split in (bundle.members, bundle.nonmembers):
        y = split.y.numpy()
        known = np.sort(
            np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)])
        )
        rest = np.setdiff1d(np.arange(len(y)), known)
        parts.append((split.subset(rest), split.subset(known)))
    (m_eval, m_known), (n_eval, n_known) = parts
    return m_eval, n_eval, m_known, n_known


def shadow_splits(bundle: DataBundle, seed: int) -> tuple[Split, Split]:
    """Halve the attacker's population into shadow members and shadow non-members."""
    pop = bundle.population
    n = min(len(pop) // 2, len(bundle.members))
    if n < bundle.num_classes:
        raise ConfigError(f"population of {len(pop)} examples is too small for shadow models")
    idx_in, idx_out = stratified_split(pop.y.numpy(), [n, min(n, len(pop) - n)], seed=seed + 1)
    return pop.subset(idx_in), pop.subset(idx_out)


def loss_histogram(
    model: torch.nn.Module, bundle: DataBundle, bins: int, device: torch.device
) -> dict[str, Any]:
    """Member vs non-member log10-loss histograms (Song et al. Fig. 1)."""
    losses = [
        per_example_loss(model, s.x, s.y, device=device).clamp_min(1e-12).log10().numpy()
        for s in (bundle.members, bundle.nonmembers)
    ]
    edges = np.linspace(
        min(-12.0, float(np.min(np.r_[losses[0], losses[1]]))),
        max(1.0, float(np.max(np.r_[losses[0], losses[1]]))),
        bins + 1,
    )
    counts = [np.histogram(v, bins=edges)[0] / max(len(v), 1) for v in losses]
    return {
        "log10": True,
        "bins": edges.tolist(),
        "members": counts[0].tolist(),
        "nonmembers": counts[1].tolist(),
        "zero_loss_fraction": {
            "members": float(np.mean(losses[0] <= -6)),
            "nonmembers": float(np.mean(losses[1] <= -6)),
        },
    }
