"""``privlab.audit(..., train_fn=)``: the user's own training loop trains the shadow and the
reference models (LiRA here), which are cached by the function's identity; a function that
fails, returns something else than the audited architecture, or comes with a recipe is
refused with one clear error."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import privlab
from digits_audit import digits_arrays, digits_net, fit_digits
from privlab.auditing import memory
from privlab.auditing.api import AuditResult
from privlab.auditing.errors import AuditInputError
from privlab.config.base import Component
from privlab.data.bundle import Split
from privlab.registry import DATASETS
from privlab.studies.targets.reference_models import trained_by_fn

REFERENCES = 16  # the default reference_models.count (the audit does not change it)


_net = digits_net


def counting(calls: list[tuple]) -> object:
    def train_fn(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        calls.append((x.dtype, y.dtype, x.device.type, type(seed), len(y)))
        return fit_digits(x, y, seed, epochs=100)

    return train_fn


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return digits_arrays()


def _audit(data: dict, out: Path, **kwargs: object) -> AuditResult:
    return privlab.audit(
        fit_digits(*data["members"]),
        members=data["members"],
        nonmembers=data["nonmembers"],
        population=data["population"],
        attacks=["lira"],
        out=out,
        **kwargs,
    )


def _lira(report: dict) -> tuple[dict, dict]:
    (target,) = report["studies"]["targets"]["runs"][0]["targets"]
    lira = next(a for a in target["attacks"] if a["label"] == "lira (online)")
    return lira, target["reference_models"]


def test_train_fn_trains_the_shadow_and_references_once_then_the_cache_serves(
    data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVLAB_CACHE", str(tmp_path / "cache"))
    calls: list[tuple] = []
    result = _audit(data, tmp_path / "a", train_fn=counting(calls))
    assert not any(s.startswith("lira") for s in result.skipped)
    lira, refs = _lira(result.report)
    assert lira["metrics"]["auc"] > 0.6  # measured 0.69 (chance 0.5): the overfit model leaks
    assert len(calls) == REFERENCES + 1  # every reference model and the shadow
    assert {c[:4] for c in calls} == {(torch.float32, torch.int64, "cpu", int)}
    pool = sum(len(data[s][1]) for s in ("members", "nonmembers", "population"))
    # every pool example (members, non-members, population) is IN for half of the references
    assert sum(c[4] for c in calls[1:]) == pool * REFERENCES // 2
    assert refs["trainer"] == "train_fn counting.<locals>.train_fn" and not refs["cached"]
    assert refs["count"] == REFERENCES and refs["recipe"] is None

    again = _audit(data, tmp_path / "b", train_fn=counting(calls))
    assert len(calls) == REFERENCES + 1  # the shadow and references came from the cache
    lira_again, refs_again = _lira(again.report)
    assert refs_again["cached"] and refs_again["cache_key"] == refs["cache_key"]
    assert lira_again["metrics"]["auc"] == lira["metrics"]["auc"]


def _failing(data: dict, tmp_path: Path, train_fn: object, match: str) -> None:
    with pytest.raises(AuditInputError, match=match):
        _audit(data, tmp_path, train_fn=train_fn)


def test_a_train_fn_that_raises_is_named_with_its_error(data: dict, tmp_path: Path) -> None:
    def broken(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        raise RuntimeError("CUDA out of memory")

    _failing(data, tmp_path, broken, r"^train_fn .*broken: raised RuntimeError: CUDA out of memory")


def test_a_train_fn_must_return_a_module(data: dict, tmp_path: Path) -> None:
    def weights_only(x: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
        return _net().state_dict()

    _failing(data, tmp_path, weights_only, r"weights_only: returned OrderedDict, not an nn.Module")


def test_a_train_fn_must_return_the_audited_architecture(data: dict, tmp_path: Path) -> None:
    def wider(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))

    _failing(data, tmp_path, wider, r"unlike the audited one: its 1.weight has shape \(256, 64\)")


def test_a_train_fn_must_return_finite_weights(data: dict, tmp_path: Path) -> None:
    def diverged(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        model = _net()
        with torch.no_grad():
            model[3].bias.fill_(float("nan"))
        return model

    _failing(
        data, tmp_path, diverged, r"diverged: returned non-finite \(NaN/inf\) weights in 3.bias"
    )


def test_an_audit_warns_when_a_train_fn_cannot_be_cached(data: dict, tmp_path: Path) -> None:
    def broken(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
        raise RuntimeError("stop here")

    with pytest.warns(UserWarning, match="broken: a partial .* not cached across runs"):
        _failing(data, tmp_path, functools.partial(broken), "stop here")


def test_recipe_and_train_fn_together_are_refused(data: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recipe= .* or train_fn= .*not both"):
        _audit(data, tmp_path, train_fn=counting([]), recipe={"epochs": 1})
    assert not (tmp_path / "report.json").exists()


def test_the_identity_of_a_train_fn_is_its_source_name_and_constants() -> None:
    first, second = counting([]), counting([1, 2])  # a captured list is not part of it
    assert memory.trainer_identity(first)[0] == memory.trainer_identity(second)[0] is not None
    assert memory.trainer_identity(fit_digits)[0] != memory.trainer_identity(first)[0]

    def with_epochs(epochs: int) -> object:
        return lambda x, y, seed: fit_digits(x, y, seed, epochs)

    assert memory.trainer_identity(with_epochs(1))[0] != memory.trainer_identity(with_epochs(2))[0]
    for no_source in (functools.partial(fit_digits, epochs=1), print):
        identity, why = memory.trainer_identity(no_source)
        assert identity is None and "not a plain function" in why


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def task(self, description: str, total: int) -> _Log:
        return self

    def advance(self, steps: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


def test_a_train_fn_without_source_trains_every_time_and_says_so_once(tmp_path: Path) -> None:
    bundle = DATASETS.build("digits", seed=0)
    data = Split(bundle.members.x[:40], bundle.members.y[:40])
    calls: list[tuple] = []
    fn = functools.partial(counting(calls))  # a partial has no source of its own
    spec, model = memory.register_trainer(fn), memory.register(_net())
    log = _Log()
    try:
        for _ in range(2):
            made = trained_by_fn(
                spec,
                [(data, 1), (data, 2)],
                {"role": "reference", "seeds": [1, 2], "data": data.sha256()},
                model_cfg=Component(name="user_model", params={"spec": model}),
                bundle=bundle,
                cache_dir=tmp_path,
                progress=log,
                label="2 models",
            )
            assert made.key is None and not made.cached
            assert all(not m.training for m in made.models)
    finally:
        memory.release(spec)
        memory.release(model)
    assert len(calls) == 4 and not list(tmp_path.rglob("*.safetensors"))
    assert [line for line in log.lines if "not cached" in line] == [
        "train_fn counting.<locals>.train_fn: not cached across runs "
        "(a partial is not a plain function with source)"
    ]
    first = np.asarray(made.models[0][1].weight.detach())
    assert not np.allclose(first, np.asarray(made.models[1][1].weight.detach()))
