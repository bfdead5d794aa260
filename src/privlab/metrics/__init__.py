"""Metrics for privacy attacks: pure functions of labels and scores."""

from privlab.metrics.dp_audit import (
    EpsilonLowerBound,
    epsilon_lower_bound,
    many_run_epsilon_lower_bound,
)
from privlab.metrics.dp_audit_one_run import (
    OneRunBound,
    one_run_epsilon_from_counts,
    one_run_epsilon_lower_bound,
    one_run_epsilon_lower_bound_grid,
    one_run_p_value,
)
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
    "EpsilonLowerBound",
    "OneRunBound",
    "RocCurve",
    "ThresholdResult",
    "TprAtFpr",
    "accuracy_at_threshold",
    "advantage",
    "auc",
    "best_threshold",
    "clopper_pearson",
    "epsilon_lower_bound",
    "inference_accuracy",
    "many_run_epsilon_lower_bound",
    "membership_metrics",
    "one_run_epsilon_from_counts",
    "one_run_epsilon_lower_bound",
    "one_run_epsilon_lower_bound_grid",
    "one_run_p_value",
    "roc_curve",
    "tpr_at_fpr",
]
