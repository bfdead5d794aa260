"""Layering: attacks know nothing of the orchestration. No module under src/privlab/attacks
imports privlab.run, privlab.studies, privlab.report or privlab.cli (at top level or inside a
function, ``import x``, ``from x import y`` or ``from privlab import x``)."""

from __future__ import annotations

import ast
from pathlib import Path

import privlab

ATTACKS_DIR = Path(privlab.__file__).parent / "attacks"
FORBIDDEN = ("privlab.run", "privlab.studies", "privlab.report", "privlab.cli")


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def imported_modules(source: str) -> set[str]:
    """Every absolute module an ``ast`` of ``source`` imports (``from a import b`` gives both
    ``a`` and ``a.b``, since b may be a submodule)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def test_the_checker_sees_every_form_of_import() -> None:
    source = """
import privlab.run.store
from privlab.studies.reconstruction import shadow_heads
from privlab import report
def f():
    import privlab.cli
from privlab.registry import ATTACKS
"""
    found = {m for m in imported_modules(source) if _forbidden(m)}
    assert {"privlab.run.store", "privlab.studies.reconstruction", "privlab.report"} <= found
    assert "privlab.cli" in found and not _forbidden("privlab.registry")
    assert not _forbidden("privlab.runtime") and _forbidden("privlab.run")


def test_no_attack_imports_the_orchestration_layer() -> None:
    paths = sorted(ATTACKS_DIR.rglob("*.py"))
    assert len(paths) > 10  # the walk sees the attack modules
    offenders = {
        str(path.relative_to(ATTACKS_DIR.parent)): sorted(
            m for m in imported_modules(path.read_text()) if _forbidden(m)
        )
        for path in paths
    }
    offenders = {path: mods for path, mods in offenders.items() if mods}
    assert not offenders, f"attacks import the orchestration layer: {offenders}"


def test_no_attack_uses_a_relative_import() -> None:
    """Relative imports would slip past the check above; the package uses absolute ones."""
    relative = [
        str(path.relative_to(ATTACKS_DIR.parent))
        for path in sorted(ATTACKS_DIR.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not relative, f"relative imports in attacks: {relative}"
