"""``privlab.audit(model, members=(x, y), nonmembers=(x, y), ...)``: the audit of a model
privlab did not train, from Python. The same run as ``privlab audit``: a targets study whose
target is given (the model, copied, never modified), on the user's data."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.auditing import memory
from privlab.auditing.plan import AuditPlan, audit_config, on_backend
from privlab.config.schema import load_config_dict
from privlab.report.headline import headlines
from privlab.report.writer import write_report
from privlab.run.runner import run_experiment
from privlab.studies.targets.figures import most_exposed_attack

Arrays = tuple[Any, Any]
#: the user's training loop for shadow and reference models: ``train_fn(x, y, seed)``
TrainFn = Callable[[torch.Tensor, torch.Tensor, int], nn.Module]


@dataclass
class AuditResult:
    """An audit's report data, its summary, its most exposed records, and ``save``."""

    report: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def summary(self) -> list[str]:
        """What leaks and how badly, in a few sentences (the top of the report)."""
        return [line for _, lines in headlines(self.report) for line in lines]

    @property
    def attacks(self) -> list[dict[str, Any]]:
        runs = self.report["studies"]["targets"]["runs"]
        return [a for run in runs for t in run["targets"] for a in t["attacks"]]

    def most_exposed(self, top: int = 10) -> list[dict[str, Any]]:
        """The members the strongest attack (highest TPR at 1 % FPR, then AUC: the report's
        choice) singles out most: index into ``members``, label, score, the false-positive rate
        a threshold there would cost and, for tabular data, the record's named ``features``."""
        runs = self.report["studies"]["targets"]["runs"]
        for target in (t for run in runs for t in run["targets"]):
            best = most_exposed_attack(target)
            if best is not None:
                return [r | {"attack": best["label"]} for r in best["exposed"][:top]]
        return []

    def save(self, folder: str | Path) -> Path:
        """Write ``report.json`` and ``report.html`` (as ``privlab audit`` does)."""
        write_report(self.report, Path(folder))
        return Path(folder) / "report.html"


def _save_arrays(folder: Path, name: str, data: Arrays) -> str:
    x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in data)
    path = folder / f"{name}.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return str(path)


def _folders(out: str | Path | None) -> tuple[Path, Path]:
    """The run folder (``out``, or a new temporary one) and its ``data/`` subfolder."""
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="privlab-audit-"))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    return folder, folder / "data"


def _register_trainer(train_fn: TrainFn | None, recipe: dict[str, Any] | None) -> str | None:
    """The spec of the user's training function for the run (warned about when its models
    cannot be cached across runs); None without one. A recipe as well is a ValueError."""
    if train_fn is None:
        return None
    if recipe is not None:
        raise ValueError(
            "give recipe= (privlab trains the shadow and reference models) or train_fn= "
            "(your training loop trains them), not both"
        )
    spec = memory.register_trainer(train_fn)
    fn = memory.trainer(spec)
    if fn.identity is None:
        warnings.warn(
            f"{fn.label}: {fn.why_not_cached}, so its models are not cached across runs "
            "(trained on every audit)",
            stacklevel=3,
        )
    return spec


def audit(
    model: nn.Module,
    *,
    members: Arrays,
    nonmembers: Arrays,
    population: Arrays | None = None,
    access: str | Sequence[str] = "black-box",
    attacks: Sequence[str] | None = None,
    recipe: dict[str, Any] | None = None,
    train_fn: TrainFn | None = None,
    defences: Sequence[str | dict[str, Any]] = ("none",),
    feature_names: Sequence[str] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    device: str | None = None,
    backend: str | None = None,
    address: str | None = None,
) -> AuditResult:
    """Audit ``model`` (an ``nn.Module``, copied: never modified) on its training data
    ``members`` and held-out ``nonmembers`` (``(x, y)`` arrays or tensors). ``population``:
    the attacker's own data; with a training ``recipe`` (TrainConfig's keys and ``regime``) it
    trains shadow and reference models of the same architecture for LiRA, RMIA and Shokri.
    ``train_fn`` (instead of ``recipe``): your own training loop trains them.
    ``train_fn(x, y, seed)`` gets one model's training data (CPU tensors, x float32,
    y int64) and an int seed, and returns the trained ``nn.Module``. It must have the
    audited model's architecture (same parameter names and shapes), and its weights are
    loaded into a copy of ``model``. The models are cached across runs, keyed by the data,
    seeds and the function's source and constants. Without source (a lambda typed into a
    REPL) they are trained on every run. An exception in ``train_fn``, a result that is not an
    ``nn.Module``, another architecture or non-finite weights is an ``AuditInputError``
    (a ValueError) naming ``train_fn``.
    ``access``: what the attacker may query (``black-box``, ``white-box`` or names).
    ``defences``: the federated defences a white-box audit's gradient inversion compares
    (names or ``{"name", "params"}``). ``feature_names``: the columns of tabular inputs, so
    the most exposed records read as named rows. ``attacks``: default every membership attack the
    access and data allow (see
    ``AuditResult.skipped`` for those left out and why). The run is written to ``out`` (a
    temporary folder if None); ``backend="ray"``: a recipe's reference models train on Ray."""
    trainer = _register_trainer(train_fn, recipe)
    spec = memory.register(model)
    try:
        folder, data_dir = _folders(out)
        plan = AuditPlan(
            model=spec,
            members=_save_arrays(data_dir, "members", members),
            nonmembers=_save_arrays(data_dir, "nonmembers", nonmembers),
            population=_save_arrays(data_dir, "population", population) if population else None,
            access=[access] if isinstance(access, str) else list(access),
            attacks=list(attacks) if attacks else None,
            feature_names=list(feature_names) if feature_names is not None else None,
            recipe=recipe, trainer=trainer, defences=list(defences), seed=seed,
        )  # fmt: skip
        data, skipped = audit_config(plan)
        data = on_backend(data, backend, address, trainer=trainer)
        report = run_experiment(load_config_dict(data), folder, device=device)
    finally:
        memory.release(spec)
        if trainer is not None:
            memory.release(trainer)
    return AuditResult(report, skipped)
