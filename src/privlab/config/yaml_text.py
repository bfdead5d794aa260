"""YAML text parsed as data (``yaml.safe_load``: never code), with a malformed text reported
in one line: where it came from, the line and column, and what is wrong there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML error (PyYAML's own message spans several, with a caret drawing)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({err.context})" if err.context else ""
        return f"{where}{err.problem}{context}"
    return " ".join(str(err).split())


def parse_yaml(text: str, where: str) -> Any:
    """``text`` as plain data; a ValueError naming ``where`` when it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML, {yaml_problem(err)}") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """The data of a YAML file the user names (``what``: config, recipe); a ValueError naming
    it when it is missing, not UTF-8 text or not valid YAML."""
    if not path.is_file():
        raise ValueError(f"{path}: {what} file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid YAML, not UTF-8 text ({err.reason})") from None
    return parse_yaml(text, str(path))
