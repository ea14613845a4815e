"""Scores of a mask or a map against an expert mask: Dice, IoU and the pointing game."""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "iou", "pointing_game"]


def _is_flat(a: np.ndarray) -> bool:
    return float(a.max() - a.min()) < 1e-6


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice = 2|A∩B| / (|A|+|B|); 1.0 when both are empty."""
    a, b = np.asarray(pred, bool), np.asarray(truth, bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU = |A∩B| / |A∪B|; 1.0 when both are empty."""
    a, b = np.asarray(pred, bool), np.asarray(truth, bool)
    u = (a | b).sum()
    return 1.0 if u == 0 else float((a & b).sum() / u)


def pointing_game(cam: np.ndarray, truth: np.ndarray, tolerance: int = 0) -> bool:
    """Does the CAM's maximum fall inside the mask (within ``tolerance`` pixels)? False for a flat CAM."""
    cam = np.asarray(cam)
    if _is_flat(cam):
        return False
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    t = np.asarray(truth, bool)
    if tolerance <= 0:
        return bool(t[y, x])
    y0, y1 = max(0, y - tolerance), y + tolerance + 1
    x0, x1 = max(0, x - tolerance), x + tolerance + 1
    yy, xx = np.mgrid[y0 : min(y1, t.shape[0]), x0 : min(x1, t.shape[1])]
    near = (yy - y) ** 2 + (xx - x) ** 2 <= tolerance**2
    return bool(t[yy[near], xx[near]].any())
