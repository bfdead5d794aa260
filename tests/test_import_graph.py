"""No import cycles anywhere in the package: the modules of src/privlab, with every import they
make (top level or inside a function, TYPE_CHECKING-only imports excepted), form a DAG."""

from __future__ import annotations

import ast
from pathlib import Path

import privlab

SRC = Path(privlab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> set[str]:
    """The privlab modules ``name`` imports (``from pkg import sub`` counts as pkg.sub)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    # a package's __init__ that re-exports its children is imported by them only through the
    # import system's parent loading, which is not an edge here
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


#: (importing package, forbidden prefix): what the layers may not know
LAYERS = [
    ("privlab.run", "privlab.studies."),
    ("privlab.report", "privlab.studies."),
    ("privlab.config", "privlab.studies."),
    ("privlab.run", "privlab.attacks"),
    ("privlab.report", "privlab.attacks"),
    ("privlab.attacks", "privlab.run"),
    ("privlab.attacks", "privlab.studies"),
    ("privlab.attacks", "privlab.report"),
]
ALLOWED = {"privlab.studies.base"}  # the protocol every layer may name


def test_the_family_agnostic_layers_know_no_family() -> None:
    bad = [
        (name, imported)
        for name in MODULES
        for package, forbidden in LAYERS
        if name == package or name.startswith(package + ".")
        for imported in imports_of(name)
        if imported.startswith(forbidden) and imported not in ALLOWED
    ]
    assert not bad, f"layering violations: {bad}"


def test_studies_do_not_import_each_other() -> None:
    def family(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "studies" else None

    bad = [
        (name, imported)
        for name in MODULES
        if family(name)
        for imported in imports_of(name)
        if family(imported) and family(imported) != family(name)
    ]
    assert not bad, f"one study imports another: {bad}"
