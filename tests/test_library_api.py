"""The library face: ``import privlab`` exposes the documented API, and the README's
notebook-style snippet runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import privlab

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_documented_name_resolves() -> None:
    for name in privlab.__all__:
        assert getattr(privlab, name) is not None, name
    assert privlab.DEFENCES.kind == "defence" and "targets" in privlab.STUDIES


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        privlab.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_the_readme_library_snippet_runs(tmp_path: Path) -> None:
    section = README.read_text().split("## Use it as a library", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    script = tmp_path / "snippet.py"
    script.write_text(snippet.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "notebook: membership inference accuracy" in done.stdout
    assert "natural" in done.stdout and "digits" in done.stdout and "targets" in done.stdout
    auc = float(done.stdout.strip().splitlines()[-2])
    # the snippet's scores, checked against scikit-learn's AUC
    from sklearn.metrics import roc_auc_score

    is_member = np.r_[np.ones(100), np.zeros(100)]
    scores = np.r_[np.linspace(0.3, 1, 100), np.linspace(0, 0.7, 100)]
    assert abs(auc - roc_auc_score(is_member, scores)) < 1e-9
