"""Counterfactual masks: the lesion is the smallest region whose removal turns the call to *no tumour*.

A map (CAM or the weak-mask network's tumour probability) ranks the pixels; its level sets, from the
highest level down, are nested candidate regions. Each candidate is removed from the image exactly as
the lesion-removal test removes a lesion (dilated, filled from its surroundings:
`tumorlens.data.lesion.remove`), and the judging classifier reads every removed version at once. The
mask is the smallest candidate after whose removal the judge calls the image *no tumour* (probability
``>= threshold``); where none does, the caller's fallback mask (the map binarised as usual) stands, so
every image gets a mask. The judge must itself pass the lesion-removal test, or no removal flips it.

    masks, level, passes = counterfactual_masks(images, maps, predict, fallback=default_masks)
    # images uint8 (N, S, S, 3); maps float (N, S, S); predict: uint8 (M, S, S, 3) -> (M, 4) probabilities

Cost: ``len(levels)`` forward passes of the judge per image (one batch per image).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.lesion import dilate, head_mask, remove
from tumorlens.utils.progress import progress

__all__ = ["LEVELS", "candidate_regions", "counterfactual_masks"]

#: Levels of the map (relative to its maximum inside the head), from the smallest region to the largest.
LEVELS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
NOTUMOR = CLASSES.index("notumor")


def candidate_regions(image: np.ndarray, cmap: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """The map's level sets inside the head, bool ``(len(levels), S, S)``: pixel ``>= level * max``
    (the map's maximum inside the head); nested when ``levels`` decrease. An all-zero map gives empty
    regions."""
    if cmap.shape != image.shape[:2]:
        raise ValueError(f"map shape {cmap.shape} does not match the image's {image.shape[:2]}")
    if any(not 0 < lv <= 1 for lv in levels):
        raise ValueError(f"levels must lie in (0, 1], got {list(levels)}")
    head = head_mask(image)
    m = np.where(head, np.nan_to_num(cmap.astype(np.float32), nan=0.0), 0.0)
    top = float(m.max())
    if top <= 0:
        return np.zeros((len(levels), *cmap.shape), bool)
    return np.stack([(m >= lv * top) & head for lv in levels])


def counterfactual_masks(
    images: np.ndarray,
    maps: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    fallback: np.ndarray | None = None,
    levels: Sequence[float] = LEVELS,
    dilation: float = 0.03,
    method: str = "telea",
    threshold: float = 0.5,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(masks bool (N, S, S), level index (N,) int -- -1 where no candidate flipped the call and the
    fallback stands --, forward passes of the judge)``.

    ``images`` uint8 ``(N, S, S, 3)``; ``maps`` ``(N, S, S)``; ``predict`` maps uint8 ``(M, S, S, 3)``
    to ``(M, 4)`` class probabilities; ``fallback`` bool ``(N, S, S)`` (default: empty masks)."""
    if images.ndim != 4 or maps.shape != images.shape[:3]:
        raise ValueError(f"images (N, S, S, 3) and maps (N, S, S) must agree, got {images.shape} and {maps.shape}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    n = len(images)
    masks = np.zeros(maps.shape, bool) if fallback is None else fallback.astype(bool).copy()
    chosen = np.full(n, -1, int)
    passes = 0
    for i in progress(range(n), total=n, desc="counterfactual masks", unit="img", disable=not show_progress):
        regions = candidate_regions(images[i], maps[i], levels)
        keep = [k for k in range(len(levels)) if regions[k].any()]
        if not keep:
            continue
        versions = np.stack([remove(images[i], dilate(regions[k], dilation), method) for k in keep])
        p = np.asarray(predict(versions))
        passes += len(keep)
        flipped = [k for k, row in zip(keep, p) if row[NOTUMOR] >= threshold]
        if flipped:
            chosen[i] = flipped[0]
            masks[i] = regions[flipped[0]]
    return masks, chosen, passes
