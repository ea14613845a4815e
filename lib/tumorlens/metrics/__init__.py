"""Scores: classification metrics, statistics for comparing systems, and segmentation overlap.

classification  accuracy, macro-F1, per-class P/R/F1, confusion matrix, log-loss, ECE
stats           bootstrap intervals, paired differences, McNemar, seed summaries
segmentation    Dice, IoU, the pointing game
"""

from tumorlens.metrics.classification import classification_metrics, expected_calibration_error
from tumorlens.metrics.segmentation import dice, iou, pointing_game
from tumorlens.metrics.stats import (
    METRICS,
    accuracy,
    bootstrap_ci,
    compare,
    macro_f1,
    mcnemar,
    mcnemar_from_counts,
    paired_bootstrap_diff,
    seed_summary,
)

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "dice",
    "iou",
    "pointing_game",
    "METRICS",
    "accuracy",
    "bootstrap_ci",
    "compare",
    "macro_f1",
    "mcnemar",
    "mcnemar_from_counts",
    "paired_bootstrap_diff",
    "seed_summary",
]
