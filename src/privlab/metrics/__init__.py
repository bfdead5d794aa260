"""Metrics for privacy attacks: pure functions of labels and scores."""

from privlab.metrics.membership import (
    RocCurve,
    ThresholdResult,
    TprAtFpr,
    accuracy_at_threshold,
    advantage,
    auc,
    best_threshold,
    clopper_pearson,
    inference_accuracy,
    membership_metrics,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "RocCurve",
    "ThresholdResult",
    "TprAtFpr",
    "accuracy_at_threshold",
    "advantage",
    "auc",
    "best_threshold",
    "clopper_pearson",
    "inference_accuracy",
    "membership_metrics",
    "roc_curve",
    "tpr_at_fpr",
]
