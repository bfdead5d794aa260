"""Check that two runs' reports hold identical numbers (every utility and attack metric).

    python benchmarks/check_report_numbers.py OLD_RUN NEW_RUN

Both reports are read in the current schema (a schema-1 report is upgraded first); the
header's timings, versions and device and every ``seconds`` value are left out. Exits 1 and
lists the differing paths when any number or string differs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from privlab.report.schema import load_report

SKIP = {"timings", "versions", "device", "config", "upgraded_from", "seconds", "train_seconds"}


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in SKIP and not key.endswith("_seconds"):
                yield from leaves(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, f"{path}[{i}]")
    else:
        yield path, node


def main(old: str, new: str) -> int:
    a, b = dict(leaves(load_report(old))), dict(leaves(load_report(new)))
    diffs = [p for p in sorted(set(a) | set(b)) if a.get(p, "<missing>") != b.get(p, "<missing>")]
    for path in diffs[:50]:
        print(f"{path}: {a.get(path, '<missing>')!r} != {b.get(path, '<missing>')!r}")
    print(f"{len(a)} values compared, {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
