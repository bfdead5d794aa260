"""A store that cannot lie: damaged cache and state files are detected, warned about (naming
the file) and recomputed; one process trains a model while another waits for it; a failed
write (a full disk) leaves no temporary file and raises a StoreError naming the path.

Imports only the store and the model cache; the architecture and regime builders are stubbed
so that no registry is needed, and training is counted with a marker file.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import re
import sys
import threading
import time
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from privlab.config.base import Component, TrainConfig
from privlab.data.bundle import DataBundle, Split
from privlab.run import files, model_cache, store, weights
from privlab.run.files import (
    StoreError,
    atomic_write_json,
    cache_lock,
    cached_json,
    read_checked_json,
    remove_unless_used,
    shared_use,
)
from privlab.run.progress import SilentProgress
from privlab.run.store import StateDir
from privlab.run.weights import (
    ModelFileError,
    load_state,
    save_model,
    state_sha256,
    tensors_sha256,
    try_load_cached,
)
from privlab.training.regime import Regime

# ---------------------------------------------------------------- a tiny recipe


def _bundle() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    data = Split(torch.rand(32, 4, generator=gen), torch.randint(0, 2, (32,), generator=gen))
    empty = Split(data.x[:0], data.y[:0])
    return DataBundle("tiny", data, empty, empty, num_classes=2, input_shape=(4,))


def _build_model(
    component: Component, bundle: DataBundle, seed: int, regime: Any = None
) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(4, 2)


def _build_regime(component: Component, bundle: DataBundle, public: Any = None) -> Regime:
    return Regime()


def _stub(module: Any, marker: Path, sleep: float = 0.0) -> None:
    """Builders without the registry; ``train`` writes one line to ``marker`` per call."""
    real_train = model_cache.train

    def counted_train(*args: Any, **kwargs: Any) -> Any:
        with marker.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(sleep)  # a window in which a second process would start its own copy
        return real_train(*args, **kwargs)

    module.setattr(model_cache, "build_model", _build_model)
    module.setattr(model_cache, "build_regime", _build_regime)
    module.setattr(model_cache, "train", counted_train)


class _Setattr:
    """monkeypatch.setattr for a child process (no pytest fixture there)."""

    @staticmethod
    def setattr(target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


def _get(cache: Path, progress: Any = None) -> model_cache.TrainedModel:
    bundle = _bundle()
    return model_cache.get_or_train(
        role="target",
        data=bundle.members,
        bundle=bundle,
        model_cfg=Component(name="linear"),
        regime_cfg=Component(name="natural"),
        train_cfg=TrainConfig(epochs=2, batch_size=8),
        seed=3,
        device=torch.device("cpu"),
        cache_dir=cache,
        progress=progress or SilentProgress(),
        label="tiny",
    )


def _trainings(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def _alter_one_float(path: Path) -> str:
    """Rewrite the safetensors file with one weight changed (still finite); its new hash."""
    state = load_file(str(path))
    state["weight"][0, 0] += 0.5
    save_file(state, str(path), metadata={"format": "pt"})
    return tensors_sha256(state)


# ---------------------------------------------------------------- 1. verified model loads


def test_altered_cached_model_is_retrained_with_a_warning(tmp_path, monkeypatch):
    marker = tmp_path / "trained"
    _stub(monkeypatch, marker)
    first = _get(tmp_path / "cache")
    path = tmp_path / "cache" / "models" / f"{first.key}.safetensors"
    assert not first.cached and _trainings(marker) == 1
    assert _get(tmp_path / "cache").cached and _trainings(marker) == 1

    altered = _alter_one_float(path)
    assert altered != first.sha256
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*do not match the sha256"):
        again = _get(tmp_path / "cache")
    assert not again.cached and _trainings(marker) == 2
    # the new model's hash, retrained from the seeded initialisation (not the altered weights)
    assert again.sha256 == state_sha256(again.model) == first.sha256 != altered
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model_sha256"] == again.sha256 == tensors_sha256(load_file(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _get(tmp_path / "cache").cached and _trainings(marker) == 2


def test_load_state_and_try_load_cached_check_the_recorded_sha256(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(nn.Linear(4, 2), path, {})
    _alter_one_float(path)
    fresh = nn.Linear(4, 2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ModelFileError, match=re.escape(str(path)) + ".*do not match"):
        load_state(fresh, path)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        assert try_load_cached(fresh, path) is None
    for name, value in fresh.state_dict().items():  # a rejected entry leaves the model as it was
        assert torch.equal(value, before[name])


@pytest.mark.parametrize(
    "damage",
    [
        lambda meta: meta.pop("model_sha256"),
        lambda meta: meta.update(model_sha256="0" * 64),
    ],
    ids=["no-recorded-sha", "wrong-recorded-sha"],
)
def test_metadata_without_the_right_sha256_is_not_trusted(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    save_model(nn.Linear(4, 2), path, {"seconds": 1.0})
    meta = json.loads(path.with_suffix(".json").read_text())
    damage(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        assert weights.load_cached(nn.Linear(4, 2), path) is None


def test_corrupt_metadata_json_is_retrained_not_raised(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(nn.Linear(4, 2), path, {})
    path.with_suffix(".json").write_text('{"model_sha256": "ab')
    with pytest.warns(UserWarning, match="corrupt JSON"):
        assert weights.load_cached(nn.Linear(4, 2), path) is None


def test_an_intact_cache_entry_loads_without_a_warning(tmp_path):
    model = nn.Linear(4, 2)
    path = tmp_path / "m.safetensors"
    digest = save_model(model, path, {"seconds": 2.5})
    fresh = nn.Linear(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = weights.load_cached(fresh, path)
    assert meta is not None and meta["model_sha256"] == digest == state_sha256(fresh)


# ---------------------------------------------------------------- 2. checksummed state/


def _counting(result: dict[str, Any]) -> tuple[list[int], Any]:
    calls: list[int] = []

    def fn() -> dict[str, Any]:
        calls.append(1)
        return result

    return calls, fn


RESULT = {"auc": 0.8125, "per_class": [0.25, 0.5], "note": "ok"}


def _state_file(out: Path) -> Path:
    (path,) = (out / "state").glob("*.json")
    return path


def test_truncated_state_entry_is_recomputed_with_a_warning(tmp_path):
    state = StateDir(tmp_path)
    key = {"attack": "lira", "seed": 0}
    state.get_or_run("lira", key, lambda: RESULT)
    path = _state_file(tmp_path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    calls, fn = _counting(RESULT)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        assert state.get_or_run("lira", key, fn) == RESULT
    assert calls == [1]
    assert read_checked_json(path)["result"] == RESULT  # rewritten whole


def test_edited_state_entry_is_recomputed_with_a_warning(tmp_path):
    state = StateDir(tmp_path)
    key = {"attack": "lira", "seed": 0}
    state.get_or_run("lira", key, lambda: RESULT)
    path = _state_file(tmp_path)
    text = path.read_text()
    assert "0.8125" in text
    path.write_text(text.replace("0.8125", "0.9999"))  # still valid JSON, a different number
    calls, fn = _counting(RESULT)
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*checksum"):
        assert state.get_or_run("lira", key, fn)["auc"] == 0.8125
    assert calls == [1]


def test_intact_state_entry_is_reused(tmp_path):
    state = StateDir(tmp_path)
    key = {"attack": "lira", "seed": 0}
    state.get_or_run("lira", key, lambda: RESULT)

    def must_not_run() -> dict[str, Any]:
        raise AssertionError("an intact entry was recomputed")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert state.get_or_run("lira", key, must_not_run) == RESULT
        assert files.CHECKSUM_KEY not in cached_json(_state_file(tmp_path), must_not_run)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "corrupt JSON"),
        ("{not json", "corrupt JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"auc": 0.8125}', "no checksum"),
        ('{"auc": 0.8125, "_sha256": "beef"}', "checksum"),
        (b"\xff\xfe\x00garbage", "corrupt JSON"),
    ],
    ids=["empty", "invalid", "not-object", "no-checksum", "bad-checksum", "binary"],
)
def test_cached_json_recomputes_every_kind_of_bad_entry(tmp_path, content, problem):
    path = tmp_path / "state" / "unit.json"
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    calls, fn = _counting({"auc": 0.5})
    with pytest.warns(UserWarning, match=re.escape(str(path)) + f".*{problem}"):
        assert cached_json(path, fn) == {"auc": 0.5}
    assert calls == [1] and cached_json(path, fn) == {"auc": 0.5} and calls == [1]


def test_non_finite_results_round_trip_through_the_checksum(tmp_path):
    path = tmp_path / "unit.json"
    cached_json(path, lambda: {"auc": float("nan"), "rows": (1, 2), 3: "int key"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_json(path, lambda: {}) == {"auc": None, "rows": [1, 2], "3": "int key"}


def test_the_checksum_key_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved key"):
        cached_json(tmp_path / "unit.json", lambda: {files.CHECKSUM_KEY: "x"})


# ---------------------------------------------------------------- 3. one training per key


def _train_in_child(cache: str, marker: str, barrier: Any, out: Any) -> None:
    _stub(_Setattr, Path(marker), sleep=1.5)
    barrier.wait()
    trained = _get(Path(cache))
    out.put((trained.cached, trained.sha256))


NO_FCNTL = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: the lock is a no-op")


@NO_FCNTL
def test_two_processes_train_the_same_model_once(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    marker = tmp_path / "trained"
    args = (str(tmp_path / "cache"), str(marker), barrier, out)
    procs = [ctx.Process(target=_train_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert _trainings(marker) == 1
    assert sorted(cached for cached, _ in results) == [False, True]
    assert results[0][1] == results[1][1]
    assert list((tmp_path / "cache" / "models").glob("*.tmp")) == []


@NO_FCNTL
def test_a_second_holder_waits_for_the_lock(tmp_path):
    path = tmp_path / "models" / "key.safetensors"
    events: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with cache_lock(path):
            holding.set()
            time.sleep(0.3)
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with cache_lock(path, on_wait=lambda: events.append("waited")):
        events.append("second in")
    thread.join()
    assert events == ["waited", "first done", "second in"]
    assert path.with_suffix(".lock").is_file()


def test_without_fcntl_the_lock_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_fcntl", lambda: None)
    path = tmp_path / "models" / "key.safetensors"
    with cache_lock(path), cache_lock(path):  # no deadlock
        pass
    assert not path.with_suffix(".lock").exists()


def _hold_in_use(folder: Path, ready: Any, release: Any) -> None:
    with shared_use(folder):
        ready.set()
        release.wait(60)


@NO_FCNTL
def test_a_cached_folder_in_use_by_another_process_is_not_removed(tmp_path):
    """Two runs share a cache entry (the same shadow heads): the one that finishes first must
    not delete it from under the other; once nobody uses it, it goes."""
    folder = tmp_path / "shadow_heads" / "0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "shard-00000.safetensors").write_bytes(b"x")
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_in_use, args=(folder, ready, release))
    other.start()
    try:
        assert ready.wait(60)
        with shared_use(folder):  # users do not exclude each other
            pass
        assert remove_unless_used(folder) is False
        assert (folder / "shard-00000.safetensors").is_file()
    finally:
        release.set()
        other.join(timeout=60)
    assert other.exitcode == 0
    assert remove_unless_used(folder) is True
    assert not folder.exists() and folder.with_suffix(".lock").is_file()


@pytest.mark.parametrize("locks", ["no fcntl", "no locks on the file system"])
def test_without_locks_a_finished_folder_is_removed(tmp_path, monkeypatch, locks):
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "no locks available")

    fake = types.SimpleNamespace(LOCK_SH=1, LOCK_EX=2, LOCK_NB=4, flock=no_locks)
    monkeypatch.setattr(files, "_fcntl", lambda: None if locks == "no fcntl" else fake)
    folder = tmp_path / "shadow_heads" / "key"
    folder.mkdir(parents=True)
    with shared_use(folder):
        pass
    assert remove_unless_used(folder) is True
    assert not folder.exists()


# ---------------------------------------------------------------- 4. a full disk


def _no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_leaves_no_temp_file_and_raises_one_line(tmp_path, monkeypatch):
    path = tmp_path / "state" / "unit.json"
    atomic_write_json(path, {"old": 1})
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(StoreError) as info:
        atomic_write_json(path, {"new": 2})
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(err) == f"cannot write {path}: No space left on device"
    assert err.filename == str(path) and "\n" not in str(err)
    assert _leftovers(path.parent) == []
    assert json.loads(path.read_text()) == {"old": 1}  # the old result is intact
    with pytest.raises(StoreError, match="unit2.json: No space left"):
        cached_json(path.parent / "unit2.json", lambda: {"a": 1})
    assert _leftovers(path.parent) == [] and not (path.parent / "unit2.json").exists()


def test_a_full_disk_while_saving_a_model_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "models" / "key.safetensors"
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        save_model(nn.Linear(4, 2), path, {})
    assert list(path.parent.iterdir()) == []


def test_metadata_that_cannot_be_written_removes_the_weights(tmp_path, monkeypatch):
    path = tmp_path / "models" / "key.safetensors"

    def full_for_json(target: Path, obj: Any) -> None:
        raise StoreError(errno.ENOSPC, f"cannot write {target}: No space left on device")

    monkeypatch.setattr(weights, "atomic_write_json", full_for_json)
    with pytest.raises(StoreError, match="key.json"):
        save_model(nn.Linear(4, 2), path, {})
    assert list(path.parent.iterdir()) == []


def test_a_real_failed_write_is_a_store_error(tmp_path):
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    path = tmp_path / "models" / "big.safetensors"
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # writes past 4 KiB fail (EFBIG)
    try:
        with pytest.raises(StoreError) as info:
            save_model(nn.Linear(64, 64), path, {})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG and str(path) in str(info.value)
    assert list(path.parent.iterdir()) == []


# ---------------------------------------------------------------- 5. checkpoints


class _DiesAtEpoch(SilentProgress):
    """A progress whose training task raises when its ``when``-th epoch is reported."""

    def __init__(self, when: int) -> None:
        self.when, self.seen = when, 0

    def task(self, description: str, total: int) -> Any:
        outer = self

        class Task:
            def advance(self, steps: int = 1) -> None:
                outer.seen += steps
                if outer.seen >= outer.when:
                    raise KeyboardInterrupt

            def done(self) -> None:
                pass

        return Task()


def test_an_interrupted_training_resumes_to_the_model_an_uninterrupted_one_caches(
    tmp_path, monkeypatch
):
    _stub(monkeypatch, tmp_path / "trained")
    whole = _get(tmp_path / "whole")
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        _get(cache, progress=_DiesAtEpoch(2))  # epoch 1 was checkpointed, epoch 2 not
    (ckpt,) = (cache / "checkpoints").iterdir()
    assert not list((cache / "models").glob("*.safetensors"))
    resumed = _get(cache)
    assert resumed.key == whole.key and resumed.sha256 == whole.sha256
    assert not ckpt.exists()  # cleared once the model is in the cache


def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path):
    ckpt = store.FileCheckpoint(tmp_path / "c.safetensors", {"job": 1})
    ckpt.save({"w": torch.ones(3), "epoch": 2, "best": float("inf"), "keys": {0: [1, 2]}})
    state = ckpt.load()
    assert state is not None and state["best"] == float("inf") and state["keys"] == {0: [1, 2]}
    data = bytearray(ckpt.path.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # the last float becomes +inf: the checksum no longer holds
    ckpt.path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="c.safetensors.*sha256"):
        assert ckpt.load() is None
    ckpt.path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="starting over"):
        assert ckpt.load() is None
    ckpt.clear()
    assert ckpt.load() is None and not ckpt.path.exists()
