"""The lesion-removal test: does a classifier's tumour decision rest on the lesion?

For every tumour image with a lesion mask, three versions are classified (`make_removal_set`):

- the **original**;
- the lesion **removed**: the mask dilated by ``dilation`` of the side and filled from its surroundings
  (`tumorlens.data.lesion.remove`, each of ``methods``) -- a model whose decision rests on the lesion
  now says *no tumour*;
- a **control**: a region of the same shape, elsewhere in the head and clear of the dilated lesion,
  filled the same way -- the lesion is still there, so the decision must not move.

    rs = make_removal_set(images, masks, y, views, ids)           # uint8 (N, S, S, 3), bool (N, S, S)
    preds = {v: model_predict(x) for v, x in rs.versions()}        # (N, 4) probabilities per version
    record = removal_scores(rs, preds)

`removal_scores` reports, per method: removed -> no tumour, control -> no tumour, control -> the true
class (*class kept*) and control -> the original's prediction (*unchanged*), with the originals'
own rates beside them -- overall (Wilson 95% intervals), per class and per view. A model that passes
calls removed lesions no tumour and leaves controls alone; one that reads the scan's look (view,
sequence, anatomy) instead of the lesion calls both a tumour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.lesion import METHODS, control_region, dilate, head_mask, remove
from tumorlens.utils.progress import progress

__all__ = ["RemovalSet", "make_removal_set", "removal_scores", "wilson", "NOTUMOR", "predict_versions"]

NOTUMOR = CLASSES.index("notumor")


@dataclass
class RemovalSet:
    """Tumour images with their lesion removed and a same-shaped control removed, per method.

    ``original`` uint8 ``(N, S, S, 3)``; ``regions`` and ``controls`` bool ``(N, S, S)`` (a control is
    empty where no place for it was found: ``has_control``); ``removed[m]`` and ``control[m]`` uint8
    ``(N, S, S, 3)`` for each method ``m``."""

    ids: list[str]
    y: np.ndarray
    views: list[str]
    original: np.ndarray
    regions: np.ndarray
    controls: np.ndarray
    removed: dict[str, np.ndarray] = field(default_factory=dict)
    control: dict[str, np.ndarray] = field(default_factory=dict)
    dilation: float = 0.03

    @property
    def has_control(self) -> np.ndarray:
        return self.controls.reshape(len(self.ids), -1).any(axis=1)

    @property
    def methods(self) -> list[str]:
        return list(self.removed)

    def versions(self) -> Iterator[tuple[str, np.ndarray]]:
        """``("original", x)``, then ``("removed:<m>", x)`` and ``("control:<m>", x)`` per method."""
        yield "original", self.original
        for m in self.removed:
            yield f"removed:{m}", self.removed[m]
            yield f"control:{m}", self.control[m]


def make_removal_set(
    images: np.ndarray,
    masks: np.ndarray,
    y: Sequence[int],
    views: Sequence[str],
    ids: Sequence[str],
    *,
    dilation: float = 0.03,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    show_progress: bool = True,
) -> RemovalSet:
    """Remove each image's lesion (``masks``, dilated by ``dilation`` of the side) and a same-shaped
    control region with every method of ``methods``; the control's place is drawn with ``seed`` (one
    place per image, shared by every method).

    Args:
        images: uint8 ``(N, S, S, 3)``, letterboxed as the model reads them.
        masks: bool ``(N, S, S)``: the lesion of each image (an empty mask: nothing removed).
        y, views, ids: the true class index, the view and an identifier per image.
    """
    images, masks = np.asarray(images), np.asarray(masks, bool)
    if images.ndim != 4 or images.dtype != np.uint8 or masks.shape != images.shape[:3]:
        raise ValueError(
            f"images must be uint8 (N, S, S, 3) and masks bool (N, S, S) of the same N, S; received "
            f"{images.dtype} {images.shape} and {masks.shape}"
        )
    if not (len(y) == len(views) == len(ids) == len(images)):
        raise ValueError(f"y, views and ids need one entry per image ({len(images)})")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; received {list(methods)}")
    rng = np.random.default_rng(seed)
    n = len(images)
    regions = np.zeros(masks.shape, bool)
    controls = np.zeros(masks.shape, bool)
    removed = {m: np.empty_like(images) for m in methods}
    control = {m: np.empty_like(images) for m in methods}
    for i in progress(range(n), total=n, desc="removing lesions", unit="img", disable=not show_progress):
        region = dilate(masks[i], dilation)
        regions[i] = region
        ctrl = control_region(region, head_mask(images[i]), rng, avoid=region)
        if ctrl is not None:
            controls[i] = ctrl
        for m in methods:
            removed[m][i] = remove(images[i], region, m)
            control[m][i] = remove(images[i], controls[i], m)
    return RemovalSet(
        list(ids), np.asarray(y, int), list(views), images, regions, controls, removed, control, float(dilation)
    )


def predict_versions(rs: RemovalSet, predict: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """``predict`` (uint8 images -> ``(N, 4)`` probabilities) over every version of ``rs``."""
    return {name: np.asarray(predict(x)) for name, x in rs.versions()}


def wilson(k: int, n: int, z: float = 1.959964) -> dict:
    """A proportion ``k / n`` with its Wilson score interval (95% by default): ``{"value", "lo", "hi", "k", "n"}``
    (values None for ``n`` 0)."""
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "k": 0, "n": 0}
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo, hi = (0.0 if k == 0 else max(0.0, c - h)), (1.0 if k == n else min(1.0, c + h))
    return {"value": p, "lo": lo, "hi": hi, "k": int(k), "n": int(n)}


def _rates(pred: dict[str, np.ndarray], y: np.ndarray, has_control: np.ndarray, methods: Sequence[str]) -> dict:
    """The test's rates on one group of images (class predictions per version)."""
    orig = pred["original"]
    out = {
        "n": int(len(y)),
        "original": {
            "notumor": wilson(int((orig == NOTUMOR).sum()), len(y)),
            "correct": wilson(int((orig == y).sum()), len(y)),
        },
    }
    c = has_control
    for m in methods:
        rem, ctl = pred[f"removed:{m}"], pred[f"control:{m}"]
        out[m] = {
            "removed_notumor": wilson(int((rem == NOTUMOR).sum()), len(y)),
            "control_notumor": wilson(int((ctl[c] == NOTUMOR).sum()), int(c.sum())),
            "control_kept": wilson(int((ctl[c] == y[c]).sum()), int(c.sum())),
            "control_unchanged": wilson(int((ctl[c] == orig[c]).sum()), int(c.sum())),
        }
    return out


def removal_scores(rs: RemovalSet, probs: dict[str, np.ndarray]) -> dict:
    """The lesion-removal test's record for one model: ``probs`` maps each version of ``rs``
    (`RemovalSet.versions`) to ``(N, 4)`` probabilities.

    Returns ``{"n", "n_control", "dilation", "methods", "overall", "per_class", "per_view", "mean_p_tumour"}``;
    ``overall`` and each group hold ``original`` (``notumor``, ``correct``) and per method
    ``removed_notumor``, ``control_notumor``, ``control_kept`` (the true class) and ``control_unchanged``
    (the original's prediction), each a `wilson` proportion. ``mean_p_tumour`` is the mean probability of
    any tumour class per version (a softer view of the same shift)."""
    missing = [name for name, _ in rs.versions() if name not in probs]
    if missing:
        raise ValueError(f"probabilities missing for versions {missing}")
    pred = {k: np.asarray(v).argmax(axis=1) for k, v in probs.items()}
    hc = rs.has_control
    methods = rs.methods
    views = np.asarray(rs.views)
    per_class = {
        CLASSES[c]: _rates({k: v[rs.y == c] for k, v in pred.items()}, rs.y[rs.y == c], hc[rs.y == c], methods)
        for c in sorted(set(rs.y.tolist()))
    }
    per_view = {
        v: _rates({k: p[views == v] for k, p in pred.items()}, rs.y[views == v], hc[views == v], methods)
        for v in sorted(set(rs.views))
    }
    return {
        "n": int(len(rs.ids)),
        "n_control": int(hc.sum()),
        "dilation": rs.dilation,
        "methods": methods,
        "overall": _rates(pred, rs.y, hc, methods),
        "per_class": per_class,
        "per_view": per_view,
        "mean_p_tumour": {k: float(1.0 - np.asarray(v)[:, NOTUMOR].mean()) for k, v in probs.items()},
        "pred": {k: v.astype(int).tolist() for k, v in pred.items()},  # per image and version: paired tests
    }
