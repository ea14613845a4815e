"""Classification metrics from class probabilities (shared by training, ensembles and statistics)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = ["classification_metrics", "expected_calibration_error"]


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over ``bins`` equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str] = CLASSES) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, log-loss, ECE.

    Args:
        y_true: integer labels ``(N,)``.
        probs: class probabilities ``(N, K)``.
    """
    from sklearn.metrics import confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] != len(classes):
        raise ValueError(f"probs must be (N, {len(classes)}) with N = len(y_true) = {y.shape[0]}; got {p.shape}")
    if len(y) == 0:
        return {"n": 0}
    labels = list(range(len(classes)))
    pred = p.argmax(1)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1) / np.clip(p, 1e-7, 1).sum(1, keepdims=True), labels=labels)),
        "ece": expected_calibration_error(y, p),
    }
