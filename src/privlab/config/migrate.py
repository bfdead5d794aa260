"""Configs written before the one-schema redesign (``kind: reconstruction``, ``kind:
gradient_inversion``, or the targets' keys at the top level): a clear error that says how to
rewrite them, and the rewrite itself (``privlab migrate-config``), comments kept."""

from __future__ import annotations

import re
from typing import Any

#: top-level keys that the targets study's section took over
TARGET_KEYS = (
    "data",
    "model",
    "train",
    "targets",
    "threat_model",
    "attacks",
    "evaluation",
    "sensitivity",
    "inversion",
)
RECONSTRUCTION_KEYS = ("weak_adversary", "informed_adversary")
HEADER_KEYS = (
    "name",
    "description",
    "seed",
    "seeds",
    "device",
    "cache_dir",
    "backend",
    "address",
)


def _is_legacy_targets(data: dict[str, Any]) -> bool:
    if isinstance(data.get("targets"), list):
        return True
    return any(k in data for k in TARGET_KEYS if k != "targets")


def legacy_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` is an old-style config and how to rewrite it; None for a current one."""
    how = "run `privlab migrate-config FILE` to rewrite it"
    kind = data.get("kind")
    if kind == "reconstruction":
        return (
            "`kind: reconstruction` configs are gone: drop `kind` and put weak_adversary / "
            f"informed_adversary under a `reconstruction:` section ({how})"
        )
    if kind == "gradient_inversion":
        return f"`kind: gradient_inversion` configs are gone: drop the `kind` line ({how})"
    if kind is not None:
        return f"unknown key 'kind' ({kind!r}): a config is a header plus study sections"
    if _is_legacy_targets(data):
        moved = [k for k in TARGET_KEYS if k in data]
        return (
            f"top-level {', '.join(moved)} belong under a `targets:` section (the study that "
            f"trains targets and attacks them) ({how})"
        )
    return None


def migrate_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The current form of an old config's plain data (a current one is returned as is)."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "reconstruction":
        section = {k: data.pop(k) for k in RECONSTRUCTION_KEYS if k in data}
        return data | {"reconstruction": section}
    if kind is None and _is_legacy_targets(data):
        section = {k: data.pop(k) for k in TARGET_KEYS if k in data}
        return data | {"targets": section}
    return data


_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """Top-level blocks (key, lines); comments and blank lines go with the next key."""
    blocks: list[tuple[str | None, list[str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        match = _TOP_KEY.match(line)
        if match:
            blocks.append((match.group(1), [*pending, line]))
            pending = []
        elif line.startswith((" ", "\t")) and blocks and not pending:
            blocks[-1][1].append(line)
        else:
            pending.append(line)
    if pending:
        blocks.append((None, pending))
    return blocks


def migrate_text(text: str, data: dict[str, Any]) -> str:
    """Rewrite an old config's YAML text, keeping its comments: the moved top-level blocks
    are indented under their study's section. ``data`` is the parsed text."""
    kind = data.get("kind")
    moved: tuple[str, ...]
    if kind == "reconstruction":
        section, moved = "reconstruction", RECONSTRUCTION_KEYS
    elif kind is None and _is_legacy_targets(data):
        section, moved = "targets", TARGET_KEYS
    else:
        section, moved = "", ()
    kept: list[str] = []
    nested: list[str] = []
    for key, lines in _blocks(text):
        if key == "kind":
            lines = [ln for ln in lines if not _TOP_KEY.match(ln)]
            kept += lines
        elif key in moved:
            nested += [f"  {ln}" if ln.strip() else ln for ln in lines]
        else:
            kept += lines
    if nested:
        kept += [f"{section}:", *nested]
    return "\n".join(kept).rstrip() + "\n"
