"""A real two-node Ray cluster on this machine: a head node and a second node started as
separate processes (`ray start`), a small LiRA audit and a small gradient-inversion sweep run
across them and give the local run's results; a worker killed in the middle of a task is
replaced and the run completes with the same results. The cluster is stopped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import targets_of, tiny_config
from privlab.config.schema import load_config_dict
from privlab.run.runner import run_experiment
from ray_support import GI_SWEEP, require_ray, untimed

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Ray's token authentication (the default of `ray start --head`), for nodes and driver alike
AUTH = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _ray(*args: str) -> None:
    env = os.environ | AUTH | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=180)
    if done.returncode:
        raise RuntimeError(f"ray {' '.join(args)} failed: {done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def cluster():
    saved = {k: os.environ.get(k) for k in AUTH}
    os.environ.update(AUTH)  # the driver's side of the authentication, read as Ray starts
    ray = require_ray()
    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        common = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
        _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
        _ray("start", f"--address={address}", *common)  # the second node
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _ray("stop", "--force")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_pids() -> list[int]:
    """Ray worker processes that are running one of privlab's tasks."""
    out = subprocess.run(["pgrep", "-f", "ray::_in_task"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class _KillOneWorker(threading.Thread):
    """Kills the first worker found running a task, once, then stops looking."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for pid in _worker_pids():
                os.kill(pid, signal.SIGKILL)
                self.killed = pid
                break
            time.sleep(0.05)


def _configs(tmp_path: Path, backend: str, address: str | None) -> list:
    where = {"backend": backend, "address": address} if address else {"backend": backend}
    audit = tiny_config(
        cache_dir=str(tmp_path / backend / "cache"),
        targets=[{"name": "natural", "regime": "natural"}],
        threat_model={"reference": "none", "reference_models": {"count": 8, "tasks": 4}},
        attacks=[{"name": "lira", "params": {"variance": "global"}}],
        **where,
    )
    sweep = {
        "name": "gi",
        "cache_dir": str(tmp_path / backend / "cache"),
        "gradient_inversion": GI_SWEEP,
    }
    return [load_config_dict(audit), load_config_dict(sweep | where)]


def _results(reports: list[dict]) -> tuple:
    lira = targets_of(reports[0])[0]["attacks"][0]["metrics"]
    (setting,) = reports[1]["studies"]["gradient_inversion"]["runs"][0]["settings"]
    return untimed(lira), untimed(setting["points"])


def _weights(tmp_path: Path, backend: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    (path,) = (tmp_path / backend / "cache" / "models").glob("reference-*.safetensors")
    return load_file(str(path))


def test_a_two_node_cluster_gives_the_local_results_even_when_a_worker_dies(cluster, tmp_path):
    local = [
        run_experiment(c, tmp_path / "local" / f"run{i}")
        for i, c in enumerate(_configs(tmp_path, "local", None))
    ]

    killer = _KillOneWorker()
    killer.start()
    try:
        remote = [
            run_experiment(c, tmp_path / "ray" / f"run{i}")
            for i, c in enumerate(_configs(tmp_path, "ray", cluster))
        ]
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None  # a worker did die in the middle of a task
    assert _results(remote) == _results(local)
    a, b = _weights(tmp_path, "local"), _weights(tmp_path, "ray")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    import ray

    assert len(ray.nodes()) == 2 and all(n["Alive"] for n in ray.nodes())


def test_a_driver_killed_mid_run_resumes_from_state_to_the_local_result(cluster, tmp_path):
    import yaml

    config = {"name": "gi", "gradient_inversion": GI_SWEEP}
    path = tmp_path / "gi.yaml"
    path.write_text(yaml.safe_dump(config))
    local = run_experiment(load_config_dict(config), tmp_path / "local")
    out = tmp_path / "ray"
    privlab = str(Path(sys.executable).with_name("privlab"))
    command = [privlab, "run", str(path), "--out", str(out), "--backend", "ray"]
    command += ["--address", cluster]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while driver.poll() is None and time.monotonic() < deadline:
        done = [f.name for f in (out / "state").glob("gi-*pruning*.json")]
        if any("utility" not in name for name in done):  # a defence point's attacks are in
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert driver.wait(timeout=60) == -signal.SIGKILL  # killed in the middle, not finished
    assert not (out / "report.json").exists()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    (a,) = local["studies"]["gradient_inversion"]["runs"][0]["settings"]
    (b,) = report["studies"]["gradient_inversion"]["runs"][0]["settings"]
    assert untimed(a["points"]) == untimed(b["points"])
