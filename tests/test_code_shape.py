"""Code shape: no function over 60 lines outside the numerical kernels listed here (each a
single algorithm that reads best top to bottom, with the paper's step numbering)."""

from __future__ import annotations

import ast
from pathlib import Path

import privlab

SRC = Path(privlab.__file__).parent
MAX_LINES = 60
#: (file relative to src/privlab, function): why it stays whole
NUMERICAL_KERNELS = {
    ("metrics/robustness.py", "robust_accuracy"): "APGD-CE restarts and bookkeeping (Croce & Hein)",
    ("metrics/robustness.py", "_single_run"): "one APGD run: step-size schedule, checkpoints",
    ("verify/crown.py", "_step"): "one CROWN backward step through a layer",
    ("training/ensembles.py", "_train_chunk"): "K models' vectorised training loop",
    ("training/loop.py", "train"): "the one training loop, hooks in order",
}


def long_functions() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    out.append((str(path.relative_to(SRC)), node.name, lines))
    return out


def test_no_long_functions_outside_the_numerical_kernels() -> None:
    offenders = [f for f in long_functions() if (f[0], f[1]) not in NUMERICAL_KERNELS]
    assert not offenders, f"functions over {MAX_LINES} lines: {offenders}"


def test_the_kernel_list_names_only_existing_long_functions() -> None:
    found = {(f[0], f[1]) for f in long_functions()}
    stale = set(NUMERICAL_KERNELS) - found
    assert not stale, f"no longer long (remove from NUMERICAL_KERNELS): {sorted(stale)}"
