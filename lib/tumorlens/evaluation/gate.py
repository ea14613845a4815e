"""An evidence gate: let the weak-mask network veto a tumour prediction it sees no tumour for.

The Kaggle classes are confounded with view and sequence, so a classifier may call a healthy coronal
T1 slice "meningioma" without any local evidence. If the weak-mask network (`tumorlens.explain.refine`)
sees no tumour in such an image, a gate could turn the prediction into ``notumor``:

    pred = gate_predictions(probs, evidence, threshold)   # tumour with evidence < threshold -> notumor
    rows = gate_curve({"validation": (y, p, e), "external": (y2, p2, e2)}, thresholds)
    chosen = choose_threshold(rows, "validation")          # best validation accuracy; never the external set

``evidence`` is `tumorlens.explain.refine.tumour_evidence` (a high percentile of the network's tumour
probability inside the head). The threshold is chosen on validation only; the curve shows what each
threshold would do elsewhere, for reporting.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = ["NO_TUMOUR_INDEX", "gate_predictions", "gate_curve", "choose_threshold", "evidence_quantiles"]

NO_TUMOUR_INDEX = CLASSES.index("notumor")


def gate_predictions(probs: np.ndarray, evidence: np.ndarray, threshold: float) -> np.ndarray:
    """Class indices ``(N,)``: the argmax of ``probs (N, K)``, except that a tumour prediction whose
    ``evidence (N,)`` is below ``threshold`` becomes ``notumor`` (threshold 0: no change)."""
    probs, evidence = np.asarray(probs), np.asarray(evidence, float)
    if probs.ndim != 2 or evidence.shape != (len(probs),):
        raise ValueError(f"probs must be (N, K) and evidence (N,); received shapes {probs.shape} and {evidence.shape}")
    pred = probs.argmax(axis=1)
    pred[(pred != NO_TUMOUR_INDEX) & (evidence < threshold)] = NO_TUMOUR_INDEX
    return pred


def gate_curve(
    sets: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], thresholds: Sequence[float]
) -> list[dict]:
    """Per threshold, each set's accuracy and no-tumour recall after the gate: ``[{"threshold",
    "<set>_accuracy", "<set>_notumor_recall"}, ...]``; ``sets`` maps a name to ``(y, probs, evidence)``."""
    rows = []
    for t in thresholds:
        row = {"threshold": float(t)}
        for name, (y, probs, evidence) in sets.items():
            y = np.asarray(y)
            pred = gate_predictions(probs, evidence, t)
            healthy = y == NO_TUMOUR_INDEX
            row[f"{name}_accuracy"] = float((pred == y).mean())
            row[f"{name}_notumor_recall"] = float((pred[healthy] == NO_TUMOUR_INDEX).mean()) if healthy.any() else None
        rows.append(row)
    return rows


def choose_threshold(rows: Sequence[Mapping], on: str = "validation") -> dict:
    """The row of `gate_curve` with the best ``<on>_accuracy`` (the lowest threshold among ties, so no
    gate when none helps there): the threshold a deployment would use, chosen without the other sets."""
    key = f"{on}_accuracy"
    if not rows or key not in rows[0]:
        raise ValueError(f"rows must come from gate_curve with a set named {on!r}")
    best = max(r[key] for r in rows)
    return dict(min((r for r in rows if r[key] == best), key=lambda r: r["threshold"]))


def evidence_quantiles(y: np.ndarray, evidence: np.ndarray, qs: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95)):
    """Per true class: ``{"n", "quantiles": {q: value}}`` of the evidence (how far apart the classes lie)."""
    y, evidence = np.asarray(y), np.asarray(evidence, float)
    out = {}
    for i, cls in enumerate(CLASSES):
        e = evidence[y == i]
        out[cls] = {"n": int(len(e)), "quantiles": {str(q): float(np.quantile(e, q)) for q in qs} if len(e) else {}}
    return out
