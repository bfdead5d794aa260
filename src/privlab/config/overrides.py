"""``--set a.b.0.c=value`` overrides of a config's plain data (values parsed as YAML)."""

from __future__ import annotations

from typing import Any

from privlab.config.yaml_text import parse_yaml


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply one override in place (list indices are integers)."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        nxt_is_index = keys[i + 1].isdigit()
        if isinstance(node, list):
            node = node[int(key)]
        else:
            node = node.setdefault(key, [] if nxt_is_index else {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        out.append((key.strip(), parse_yaml(raw, f"--set {pair!r}")))
    return out


def apply_overrides(data: dict[str, Any], pairs: list[str]) -> None:
    """Apply ``key=value`` overrides in place; a bad one is a ValueError naming it."""
    for key, value in parse_overrides(pairs):
        try:
            set_dotted(data, key, value)
        except (IndexError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"--set {key}: cannot apply ({err})") from None
