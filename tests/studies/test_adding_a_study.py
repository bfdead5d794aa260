"""The "Adding a study" recipe of docs/design.md, kept honest: a tiny study registered from
this test (its own section, run, HTML, console tables and scalars, and nothing else) runs end
to end through the CLI, appears in the HTML, the console tables, ``privlab list`` and the
markdown comparison of runs, and resumes from ``state/``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from privlab.cli import app
from privlab.config.base import _Strict
from privlab.registry import STUDIES
from privlab.run.context import RunContext
from privlab.studies.base import StudyBase, StudyReport, TextTable, runs_of

CALLS: list[int] = []


class CoinSection(_Strict):
    """The study's config section."""

    flips: int = Field(10, ge=1)


class CoinStudy(StudyBase):
    """A toy family: flips a seeded coin and reports the share of heads."""

    name = "coin"
    title = "Coin flips"
    section = CoinSection

    def run(self, ctx: RunContext, cfg: CoinSection, seed: int) -> dict[str, Any]:
        def flip() -> dict[str, Any]:
            CALLS.append(seed)
            heads = sum(1 for i in range(cfg.flips) if (seed * 31 + i * i) % 3 == 0)
            return {"heads": heads / cfg.flips}

        unit = ctx.state.get_or_run("coin", {"seed": seed, "flips": cfg.flips}, flip)
        return {"seed": seed, **unit}

    def html(self, report: Mapping[str, Any], section: StudyReport) -> str:
        return "".join(f"<p>coin-html seed {r['seed']}: {r['heads']}</p>" for r in runs_of(section))

    def tables(self, report: Mapping[str, Any], section: StudyReport) -> list[TextTable]:
        rows = [[str(r["seed"]), f"{r['heads']:.2f}"] for r in runs_of(section)]
        return [TextTable("coin-table heads per seed", ["seed", "heads"], rows)]

    def scalars(self, run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        return {"coin": {"heads": run["heads"]}}


@pytest.fixture
def coin_study() -> Iterator[None]:
    STUDIES.register("coin")(CoinStudy)
    CALLS.clear()
    yield
    STUDIES.unregister("coin")


def _run(tmp_path: Path, name: str, seeds: list[int]) -> Any:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"name": name, "seeds": seeds, "coin": {"flips": 8}}))
    return CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / name)])


def test_a_study_registered_outside_the_package_runs_end_to_end(
    coin_study: None, tmp_path: Path
) -> None:
    result = _run(tmp_path, "a", [0, 1])
    assert result.exit_code == 0, result.output
    assert "coin-table heads per seed" in result.output
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    runs = report["studies"]["coin"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert report["config"]["coin"] == {"flips": 8}
    assert "coin-html seed 1" in (tmp_path / "a" / "report.html").read_text()
    assert sorted(CALLS) == [0, 1]

    # resumes: the finished units come from state/
    assert _run(tmp_path, "a", [0, 1]).exit_code == 0
    assert sorted(CALLS) == [0, 1]

    listed = CliRunner().invoke(app, ["list"])
    assert "coin" in listed.output and "flips a seeded coin" in listed.output

    assert _run(tmp_path, "b", [2]).exit_code == 0
    compared = CliRunner().invoke(
        app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--markdown"]
    )
    assert compared.exit_code == 0, compared.output
    assert "Coin flips" in compared.output
    row_a = next(
        line for line in compared.output.splitlines() if line.startswith(f"| {tmp_path / 'a'} |")
    )
    assert [r["heads"] for r in runs] == [3 / 8, 0.0]
    assert "| coin | 2 | 0.1875 ± 0.27 |" in row_a  # mean ± sample std over the two seeds


def test_a_typo_in_the_new_section_is_an_error_naming_it(coin_study: None, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"name": "bad", "coin": {"flipz": 3}}))
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "coin.flipz" in result.output
