"""privlab: measure how much a trained model exposes its training data.

The library face, for notebooks and scripts (the CLI is ``privlab``)::

    import privlab

    config = privlab.load_config("my.yaml", ["targets.train.epochs=5"])
    report = privlab.run_experiment(config, "runs/my")   # report.json + report.html
    privlab.markdown_report(report)                      # every study's tables

    bundle = privlab.DATASETS.build("digits", seed=0)    # a DataBundle
    privlab.membership_metrics(is_member, scores)        # pure metric functions

Audits of your own model: :func:`audit` → :class:`AuditResult`. Experiments:
:func:`run_experiment`, :func:`load_config`, :func:`load_config_dict`, :class:`ConfigError`.
Threat model: :class:`Target`, :class:`TargetInfo`, :class:`Access`, :class:`Knowledge`,
:class:`AccessDenied`. Data: :class:`DataBundle`, :class:`Split`, :func:`make_bundle`.
Registries: ``DATASETS``, ``MODELS``, ``REGIMES``, ``ATTACKS``, ``DEFENCES``, ``STUDIES``.
Studies: :class:`Study`, :class:`TextTable`. Reports: :func:`load_report`, :func:`render_html`,
:func:`markdown_report`. Metrics: :func:`membership_metrics`, :func:`roc_curve`, :func:`auc`,
:func:`tpr_at_fpr`, :func:`best_threshold`, :func:`advantage`, :func:`clopper_pearson`,
:func:`accuracy`, :func:`psnr`, :func:`ssim`, the ReRo bounds :func:`rero_gamma_dp` and
:func:`rero_gamma_dp_sgd`.

Names are imported on first use, so ``import privlab`` stays light.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Idle OpenMP threads that spin-wait make torch 3–37× slower on a busy 2-core machine
# (benchmarks/README.md); sleeping is the better default here. Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.2.0"

#: public name → the module that defines it
_API = {
    "audit": "privlab.auditing.api",
    "AuditResult": "privlab.auditing.api",
    "run_experiment": "privlab.run.runner",
    "RunContext": "privlab.run.context",
    "load_config": "privlab.config.schema",
    "load_config_dict": "privlab.config.schema",
    "ConfigError": "privlab.config.schema",
    "Target": "privlab.threat_model",
    "TargetInfo": "privlab.threat_model",
    "Access": "privlab.threat_model",
    "Knowledge": "privlab.threat_model",
    "AccessDenied": "privlab.threat_model",
    "DataBundle": "privlab.data.bundle",
    "Split": "privlab.data.bundle",
    "make_bundle": "privlab.data.bundle",
    "DATASETS": "privlab.registry",
    "MODELS": "privlab.registry",
    "REGIMES": "privlab.registry",
    "ATTACKS": "privlab.registry",
    "DEFENCES": "privlab.registry",
    "STUDIES": "privlab.registry",
    "Study": "privlab.studies.base",
    "TextTable": "privlab.studies.base",
    "load_report": "privlab.report.schema",
    "render_html": "privlab.report.html",
    "markdown_report": "privlab.report.compare",
    "membership_metrics": "privlab.metrics.membership",
    "roc_curve": "privlab.metrics.membership",
    "auc": "privlab.metrics.membership",
    "tpr_at_fpr": "privlab.metrics.membership",
    "best_threshold": "privlab.metrics.membership",
    "advantage": "privlab.metrics.membership",
    "clopper_pearson": "privlab.metrics.membership",
    "accuracy": "privlab.metrics.utility",
    "psnr": "privlab.metrics.image_quality",
    "ssim": "privlab.metrics.image_quality",
    "rero_gamma_dp": "privlab.metrics.bounds",
    "rero_gamma_dp_sgd": "privlab.metrics.bounds",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'privlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:  # the names above, for type checkers and IDEs
    from privlab.auditing.api import AuditResult, audit
    from privlab.config.schema import ConfigError, load_config, load_config_dict
    from privlab.data.bundle import DataBundle, Split, make_bundle
    from privlab.metrics.bounds import rero_gamma_dp, rero_gamma_dp_sgd
    from privlab.metrics.image_quality import psnr, ssim
    from privlab.metrics.membership import (
        advantage,
        auc,
        best_threshold,
        clopper_pearson,
        membership_metrics,
        roc_curve,
        tpr_at_fpr,
    )
    from privlab.metrics.utility import accuracy
    from privlab.registry import ATTACKS, DATASETS, DEFENCES, MODELS, REGIMES, STUDIES
    from privlab.report.compare import markdown_report
    from privlab.report.html import render_html
    from privlab.report.schema import load_report
    from privlab.run.context import RunContext
    from privlab.run.runner import run_experiment
    from privlab.studies.base import Study, TextTable
    from privlab.threat_model import Access, AccessDenied, Knowledge, Target, TargetInfo
