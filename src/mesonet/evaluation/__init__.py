"""Evaluation: metrics (AUC, AP, EER, per group), plots and an HTML report."""

from mesonet.evaluation.metrics import (
    METRIC_KEYS,
    best_threshold,
    compute_metrics,
    eer,
    eer_threshold,
    group_of,
)
from mesonet.evaluation.plots import (
    plot_confusion,
    plot_face_grid,
    plot_roc,
    plot_training_curves,
)
from mesonet.evaluation.report import write_report

__all__ = [
    "METRIC_KEYS",
    "best_threshold",
    "compute_metrics",
    "eer",
    "eer_threshold",
    "group_of",
    "plot_confusion",
    "plot_face_grid",
    "plot_roc",
    "plot_training_curves",
    "write_report",
]
