"""External validation: a trained model scored on images of another release, never trained or tuned on.

    ext = load_external("../shared/data/brisc2025-cls-dev", 224)   # class folders; bad files reported
    probs = predict_images(model, ext.images)
    result = score_external(probs, ext)                               # accuracy, macro-F1 (95% CI), per view

The folder holds one folder per class (``notumor`` or ``no_tumor``), or the Kaggle ``Training``/
``Testing`` layout (then every image counts). The slice's view -- axial, coronal, sagittal -- is
read from BRISC 2025 file names (``..._gl_ax_t1.jpg``); images without one are counted under
``unknown``. Unreadable files are reported (`tumorlens.data.scan`) and the rest scored; so is every
entry the scan did not read (``skipped``: other files, DICOM slices, hidden entries, links to folders,
folders that cannot be read), with its reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.inventory import ScanReport, scan
from tumorlens.data.pipeline import load_images
from tumorlens.metrics.classification import classification_metrics
from tumorlens.metrics.stats import bootstrap_ci

__all__ = ["VIEWS", "view_of", "ExternalSet", "load_external", "score_external"]

#: BRISC 2025 view codes in file names.
VIEWS = {"ax": "axial", "co": "coronal", "sa": "sagittal"}
_VIEW = re.compile(r"(?:^|[_\-.])(ax|co|sa)(?=[_\-.]|$)", re.IGNORECASE)


def view_of(path: str | os.PathLike) -> str:
    """``axial``, ``coronal``, ``sagittal`` from a BRISC-style file name, else ``unknown``."""
    m = _VIEW.search(Path(path).stem)
    return VIEWS[m.group(1).lower()] if m else "unknown"


@dataclass
class ExternalSet:
    """An external folder, read: its scan (with the files that could not be read), images and labels."""

    root: Path
    report: ScanReport
    images: np.ndarray  # uint8 (N, S, S, 3), letterboxed
    y: np.ndarray  # (N,) indices into CLASSES
    views: list[str]

    @property
    def paths(self) -> list[str]:
        return [r.rel for r in self.report.records]


def load_external(root: str | os.PathLike, image_size: int, *, show_progress: bool = True) -> ExternalSet:
    """Scan and decode an external folder. A class folder the project does not know is an error naming it
    (an external check must not silently drop a class); unreadable files are listed in the report."""
    root = Path(root)
    report = scan(root, show_progress=show_progress)
    unknown = [w for w in report.warnings if "unknown class folder" in w]
    if unknown:
        raise ValueError(f"{root}: {'; '.join(unknown)}")
    if not report.records:
        raise ValueError(f"{root}: no readable images to score ({len(report.bad)} unreadable)")
    images = load_images(report.records, image_size, show_progress=show_progress, desc="decoding (external)")
    y = np.array([CLASSES.index(r.cls) for r in report.records], int)
    return ExternalSet(root, report, images, y, [view_of(r.rel) for r in report.records])


def score_external(probs: np.ndarray, ext: ExternalSet, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Scores of ``probs`` (N, 4) on ``ext``: the classification metrics (confusion matrix, per class),
    accuracy and macro-F1 with percentile-bootstrap 95% intervals, no-tumour recall, and per view the
    accuracy (with its interval) and the no-tumour recall; plus the files that were not scored: ``bad``
    (unreadable images) and ``skipped`` (entries not read as images), each with its reason; and ``pred``,
    the predicted class index of every image (in the order of ``ext.paths``), for paired comparisons."""
    probs = np.asarray(probs, float)
    if probs.shape != (len(ext.y), len(CLASSES)):
        raise ValueError(f"probs must be ({len(ext.y)}, {len(CLASSES)}); received shape {probs.shape}")
    pred = probs.argmax(1)
    no = CLASSES.index("notumor")
    views = np.array(ext.views)

    def recall_no(mask: np.ndarray) -> float | None:
        sel = mask & (ext.y == no)
        return float((pred[sel] == no).mean()) if sel.any() else None

    per_view = {}
    for v in [*VIEWS.values(), "unknown"]:
        m = views == v
        if not m.any():
            continue
        ci = bootstrap_ci(ext.y[m], pred[m], "accuracy", n_boot=n_boot, seed=seed)
        per_view[v] = {
            "n": int(m.sum()),
            "accuracy": ci["value"],
            "accuracy_lo": ci["lo"],
            "accuracy_hi": ci["hi"],
            "n_notumor": int((m & (ext.y == no)).sum()),
            "notumor_recall": recall_no(m),
        }
    acc = bootstrap_ci(ext.y, pred, "accuracy", n_boot=n_boot, seed=seed)
    f1 = bootstrap_ci(ext.y, pred, "macro_f1", n_boot=n_boot, seed=seed)
    return {
        "dataset": ext.report.dataset(),
        "n": int(len(ext.y)),
        "n_bad": len(ext.report.bad),
        "bad": ext.report.bad,
        "n_skipped": len(ext.report.ignored),
        "skipped": ext.report.ignored,
        "metrics": classification_metrics(ext.y, probs),
        "accuracy": acc["value"],
        "accuracy_lo": acc["lo"],
        "accuracy_hi": acc["hi"],
        "macro_f1": f1["value"],
        "macro_f1_lo": f1["lo"],
        "macro_f1_hi": f1["hi"],
        "notumor_recall": recall_no(np.ones(len(ext.y), bool)),
        "per_view": per_view,
        "pred": pred.astype(int).tolist(),  # per image, in the order of ``ext.paths``: paired comparisons
    }
