"""The tests mirror the package: every folder under tests/ is named like a package of
src/privlab, and test module names are unique across folders (pytest imports them by basename:
there are no ``__init__.py`` files, so two ``test_x.py`` in different folders would collide)."""

from collections import Counter
from pathlib import Path

import privlab

TESTS = Path(__file__).parent
SRC = Path(privlab.__file__).parent


def _folders() -> list[Path]:
    return sorted(
        p.relative_to(TESTS)
        for p in TESTS.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and not p.name.startswith(".")
    )


def test_every_test_folder_mirrors_a_package():
    missing = [str(p) for p in _folders() if not (SRC / p / "__init__.py").is_file()]
    assert not missing, f"test folders with no package of that name in src/privlab: {missing}"


def test_test_module_names_are_unique_and_there_are_no_init_files():
    names = Counter(p.name for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)
    assert not [n for n, count in names.items() if count > 1]
    assert "__init__.py" not in names
