"""Shared helpers for the benchmark scripts: machine info, background load, JSON results."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def set_threads(n: int = 2) -> None:
    """Pin torch to ``n`` intra-op threads (the requirements are stated for 2 cores)."""
    torch.set_num_threads(n)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def background_processes() -> list[str]:
    """Other processes that are likely to compete for the CPU (privlab runs, pytest)."""
    found: list[str] = []
    me = os.getpid()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if any(k in cmd for k in ("privlab run", "run_paper_configs", "pytest")) and not (
            cmd.startswith("/usr/bin/time") or cmd.startswith("bash")
        ):
            found.append(f"{pid_dir.name}: {cmd[:160]}")
    return sorted(found)


def machine_info() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "library default (active)"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1_5_15": [round(v, 2) for v in load],
        "background_processes": background_processes(),
    }


def load_note(before: dict[str, Any], after: dict[str, Any]) -> str:
    bg = before["background_processes"] or after["background_processes"]
    n = before["cpu_count"] or 0
    la = max(before["loadavg_1_5_15"][0], after["loadavg_1_5_15"][0])
    if bg or la > 0.5 * n:
        return (
            f"MEASURED UNDER BACKGROUND LOAD (1-min loadavg up to {la:.2f} on {n} CPUs; "
            f"{len(bg)} competing process(es)): wall times are inflated, treat them as upper bounds"
        )
    return "machine was quiet during the run"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "timestamp": _dt.datetime.now().isoformat(timespec="seconds")} | {
        k: v for k, v in payload.items()
    }
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Clock:
    """Wall and process-CPU time of a block (CPU time is less sensitive to other load)."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def cpu_per_call(fn: Callable[[], object], repeats: int, *, warmup: int = 1) -> float:
    """Process-CPU seconds per call of ``fn``, over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    with Clock() as clock:
        for _ in range(repeats):
            fn()
    return clock.cpu / repeats


def low_fpr_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """AUC, TPR at 0.1 % and 1 % FPR (with Clopper-Pearson intervals) and the oracle accuracy
    of a ``membership_metrics`` result (its FPR keys must include 0.001 and 0.01)."""
    return {
        "auc": m["auc"],
        "tpr_at_0.1%_fpr": m["tpr_at_fpr"]["0.001"],
        "tpr_at_1%_fpr": m["tpr_at_fpr"]["0.01"],
        "tpr_at_0.1%_fpr_ci": m["tpr_at_fpr_ci"]["0.001"],
        "tpr_at_1%_fpr_ci": m["tpr_at_fpr_ci"]["0.01"],
        "oracle_acc": m["accuracy"],
    }
