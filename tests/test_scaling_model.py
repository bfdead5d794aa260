"""The cost model of docs/scaling.md (benchmarks/scaling_model.py): its scheduling against a
brute-force search, its arithmetic against a hand computation, and GPU rows marked projected
while no GPU throughput was measured."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import scaling_model


def _best_makespan(seconds: list[float], devices: int) -> float:
    best = float("inf")
    for placement in itertools.product(range(devices), repeat=len(seconds)):
        loads = [0.0] * devices
        for s, d in zip(seconds, placement, strict=True):
            loads[d] += s
        best = min(best, max(loads))
    return best


@pytest.mark.parametrize("seconds", [[5, 4, 3, 3, 3], [7, 1, 1, 1, 1, 1, 1], [2, 2, 2, 2]])
def test_longest_first_is_within_four_thirds_of_the_best_placement(seconds):
    for devices in (1, 2, 3):
        best = _best_makespan(seconds, devices)
        got = scaling_model.makespan([float(s) for s in seconds], devices)
        assert best <= got <= 4 / 3 * best  # Graham's bound for longest-first
    assert scaling_model.makespan([1.0] * 8, 64) == 1.0  # more devices than units


def test_a_units_seconds_are_its_example_passes_over_the_rate():
    units = [scaling_model.Unit("a", 2, 1_000, 8.0), scaling_model.Unit("b", 1, 600)]
    assert scaling_model.unit_seconds(units, {"a": 100.0, "b": 60.0}) == [80.0, 80.0, 10.0]


def test_gpu_rows_are_marked_projected_until_a_gpu_was_measured(capsys, monkeypatch, tmp_path):
    results = Path(scaling_model.__file__).parent / "results"
    (tmp_path / "throughput_cpu.json").write_text((results / "throughput_cpu.json").read_text())
    monkeypatch.setattr(scaling_model, "RESULTS", tmp_path)
    scaling_model.main([])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| LiRA")]
    assert len(rows) == 3 and all("projected" in r for r in rows[1:])


def test_a_measured_gpu_replaces_the_projection(capsys, monkeypatch, tmp_path):
    import json

    results = Path(scaling_model.__file__).parent / "results"
    cpu = json.loads((results / "throughput_cpu.json").read_text())
    (tmp_path / "throughput_cpu.json").write_text(json.dumps(cpu))
    gpu = {"gpu": "Test GPU", "archs": [r | {"examples_per_second": 1e4} for r in cpu["archs"]]}
    (tmp_path / "throughput_cuda.json").write_text(json.dumps(gpu))
    monkeypatch.setattr(scaling_model, "RESULTS", tmp_path)
    scaling_model.main([])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| LiRA")]
    assert len(rows) == 2 and "Test GPU (measured)" in rows[1]
    # 256 models × (25,000 × 100 + 100,000 / 3) examples at 10⁴ per second, 4 rounds on 64
    assert rows[1].endswith(f"| {scaling_model.fmt(4 * (2_500_000 + 100_000 / 3) / 1e4)} |")
