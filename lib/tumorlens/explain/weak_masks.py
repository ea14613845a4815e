"""Weak tumour masks from Grad-CAM: binarisation, a head mask, GrabCut, and their scores.

    cam  --binarise-->  raw CAM mask  (CAM-only baseline)
    cam  --hi/mid thresholds, inside the head-->  GrabCut seeds  --cv2.grabCut-->  refined mask

GrabCut (Rother et al., 2004) is initialised in mask mode, seeded one of two ways (``seeds``):

- ``levels`` (the paper's): pixels outside the head, and those whose CAM is below ``lo``, are sure
  background; inside the head, CAM >= ``hi`` is sure foreground, CAM >= ``mid`` probable foreground,
  the rest (``lo <= CAM < mid``) probable background. The colour models then pull the mask to the
  lesion's boundary within that band; without the ``lo`` limit the gray-level models of an MRI slice
  leak over the whole brain. The levels are absolute, so they suit a map whose scale means something.
- ``mask``: GrabCut refines the binarised map (the CAM-only mask): that mask eroded by ``core`` pixels
  is sure foreground, the rest of it probable foreground, a ring of ``ring`` pixels around it (inside
  the head) probable background, everything else sure background. GrabCut can then only move the
  mask's boundary by a few pixels towards image edges -- for a map whose best binarisation is a
  small top percentile (the weak-mask network's), the ``levels`` seeds would start from far too much.

Degenerate cases are defined (and tested):

- predicted class ``notumor``: the mask is **empty by design** — there is no tumour to outline;
- a flat CAM (no variation): empty — it carries no localisation;
- a CAM with no seed inside the head (all evidence on the background): empty;
- too few seeds for GrabCut's colour models: the binarised CAM inside the head is returned.

Scores: Dice and IoU (both empty counts as a perfect 1.0) and the pointing game (the CAM's peak
falls inside the expert mask, optionally within ``tolerance`` pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tumorlens.config import SegmentConfig
from tumorlens.data.lesion import head_mask  # one definition of the head, shared with the lesion-removal test

__all__ = [
    "NO_TUMOUR",
    "SegmentParams",
    "binarise",
    "head_mask",
    "keep_peak_component",
    "map_mask",
    "grabcut_mask",
    "segment",
    "weak_mask",
]


NO_TUMOUR = "notumor"


_DEFAULTS = SegmentConfig()


@dataclass(frozen=True)
class SegmentParams:
    """Settings of the CAM -> mask step. The defaults are the ``segment`` section's
    (`tumorlens.config.SegmentConfig`), defined once there; `from_config` takes a loaded section."""

    threshold: str = _DEFAULTS.threshold  # otsu | percentile | fixed: binarisation of the CAM-only mask
    value: float = _DEFAULTS.value  # the percentile (0-100) or the fixed level (0-1)
    hi: float = _DEFAULTS.hi  # GrabCut sure-foreground level of the CAM
    mid: float = _DEFAULTS.mid  # GrabCut probable-foreground level of the CAM
    iterations: int = _DEFAULTS.iterations
    lo: float = _DEFAULTS.lo  # below this CAM level, even inside the head, is sure background
    largest: bool = False  # keep only the connected component holding the map's highest value in the mask
    margin: int = 8  # pixels of sure background around the region GrabCut decides
    max_side: int = 112  # GrabCut runs on that region downscaled to at most this side (speed)
    seeds: str = "levels"  # levels: hi/mid/lo of the map | mask: refine the binarised map (ring, core)
    ring: int = 8  # mask seeds: pixels around the binarised map GrabCut may add (probable background)
    core: int = 2  # mask seeds: the binarised map eroded by this many pixels is sure foreground

    @classmethod
    def from_config(cls, section: SegmentConfig) -> "SegmentParams":
        """The parameters of a config's ``segment`` section (``cfg.segment``)."""
        return cls(
            section.threshold, section.value, section.hi, section.mid, section.iterations, section.lo, section.largest
        )

    def __post_init__(self):
        if self.threshold not in ("otsu", "percentile", "fixed"):
            raise ValueError(f"threshold must be otsu, percentile or fixed; received threshold={self.threshold!r}")
        if not 0 <= self.lo <= self.mid <= self.hi <= 1:
            raise ValueError(
                f"need 0 <= lo <= mid <= hi <= 1; received lo={self.lo!r}, mid={self.mid!r}, hi={self.hi!r}"
            )
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1; received iterations={self.iterations!r}")
        if self.seeds not in ("levels", "mask"):
            raise ValueError(f"seeds must be levels or mask; received seeds={self.seeds!r}")
        if self.ring < 1 or self.core < 0:
            raise ValueError(f"need ring >= 1 and core >= 0; received ring={self.ring!r}, core={self.core!r}")


def _is_flat(cam: np.ndarray) -> bool:
    return float(cam.max() - cam.min()) < 1e-6


def binarise(cam: np.ndarray, method: str = "otsu", value: float = 0.5) -> np.ndarray:
    """Threshold a [0, 1] CAM ``(H, W)`` into a bool mask (a flat CAM gives an empty mask)."""
    cam = np.asarray(cam, np.float32)
    if _is_flat(cam):
        return np.zeros(cam.shape, bool)
    if method == "otsu":
        u8 = np.clip(cam * 255, 0, 255).astype(np.uint8)
        level, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return u8 > level
    if method == "percentile":
        if not 0 <= value <= 100:
            raise ValueError(f"percentile must be in [0, 100]; received value={value!r}")
        return cam > np.percentile(cam, value)
    if method == "fixed":
        if not 0 <= value <= 1:
            raise ValueError(f"a fixed threshold must be in [0, 1]; received value={value!r}")
        return cam > value
    raise ValueError(f"method must be otsu, percentile or fixed; received method={method!r}")


def keep_peak_component(mask: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The connected component of ``mask`` that holds the map's highest value inside the mask (a tumour
    is one blob; stray blobs elsewhere are the map's noise). An empty mask stays empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    peak = np.unravel_index(np.argmax(np.where(mask, cam, -np.inf)), mask.shape)
    return labels == labels[peak]


def map_mask(image: np.ndarray, cam: np.ndarray, head: np.ndarray | None, params: "SegmentParams") -> np.ndarray:
    """The binarised map inside the head (``params.largest``: its peak component only)."""
    head = head_mask(image) if head is None else head
    m = binarise(cam, params.threshold, params.value) & head
    return keep_peak_component(m, cam) if params.largest else m


def _level_seeds(cam: np.ndarray, head: np.ndarray, params: "SegmentParams") -> np.ndarray:
    seeds = np.full(cam.shape, cv2.GC_BGD, np.uint8)
    seeds[head & (cam >= params.lo)] = cv2.GC_PR_BGD
    seeds[head & (cam >= params.mid)] = cv2.GC_PR_FGD
    seeds[head & (cam >= params.hi)] = cv2.GC_FGD
    return seeds


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _mask_seeds(image: np.ndarray, cam: np.ndarray, head: np.ndarray, params: "SegmentParams") -> np.ndarray:
    m = map_mask(image, cam, head, params)
    m8 = m.astype(np.uint8)
    core = cv2.erode(m8, _disk(params.core)).astype(bool) if params.core else m
    seeds = np.full(cam.shape, cv2.GC_BGD, np.uint8)
    seeds[cv2.dilate(m8, _disk(params.ring)).astype(bool) & head & ~m] = cv2.GC_PR_BGD
    seeds[m] = cv2.GC_PR_FGD
    seeds[core] = cv2.GC_FGD
    return seeds


def grabcut_mask(
    image: np.ndarray, cam: np.ndarray, head: np.ndarray | None = None, params: SegmentParams = SegmentParams()
) -> np.ndarray:
    """Refine a CAM into a bool mask with GrabCut (see the module docstring for the seeds)."""
    cam = np.asarray(cam, np.float32)
    if _is_flat(cam):
        return np.zeros(cam.shape, bool)
    head = head_mask(image) if head is None else head.astype(bool)
    rgb = np.asarray(image, np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    seeds = _mask_seeds(rgb, cam, head, params) if params.seeds == "mask" else _level_seeds(cam, head, params)
    fg_like = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if not fg_like.any():
        return np.zeros(cam.shape, bool)  # no evidence inside the head
    bg_like = ~fg_like
    if fg_like.sum() < 16 or bg_like.sum() < 16:
        return fg_like & head
    # GrabCut only decides pixels that are not sure background: run it on their bounding box plus a
    # margin of sure background (the background model then describes the lesion's surroundings)
    ys, xs = np.nonzero(seeds != cv2.GC_BGD)
    m = params.margin
    y0, y1 = max(0, ys.min() - m), min(cam.shape[0], ys.max() + m + 1)
    x0, x1 = max(0, xs.min() - m), min(cam.shape[1], xs.max() + m + 1)
    crop = np.ascontiguousarray(seeds[y0:y1, x0:x1])
    if not (crop == cv2.GC_BGD).any() and not (crop == cv2.GC_PR_BGD).any():
        return fg_like & head
    bgr = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)[y0:y1, x0:x1])
    h, w = crop.shape
    scale = min(1.0, params.max_side / max(h, w))
    if scale < 1.0:  # GrabCut's cost grows with pixels; the CAM is far coarser than this anyway
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means++ from OpenCV's per-thread RNG: reseed it here so a mask
    # depends only on its inputs, not on what the thread segmented before
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(bgr, crop, None, bgd, fgd, params.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return fg_like & head  # GrabCut could not fit its colour models: keep the seeds
    fg = np.isin(crop, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros(cam.shape, bool)
    out[y0:y1, x0:x1] = fg.astype(bool)
    out &= head
    return keep_peak_component(out, cam) if params.largest else out


def segment(
    image: np.ndarray, cam: np.ndarray, predicted_class: str, params: SegmentParams = SegmentParams()
) -> dict[str, np.ndarray]:
    """Both masks for one image: ``{"cam": binarised CAM in the head, "grabcut": refined}`` (bool ``(H, W)``).

    A ``notumor`` prediction gives two empty masks by design.
    """
    if predicted_class == NO_TUMOUR:
        empty = np.zeros(np.asarray(cam).shape, bool)
        return {"cam": empty, "grabcut": empty.copy()}
    head = head_mask(image)
    return {
        "cam": map_mask(image, cam, head, params),
        "grabcut": grabcut_mask(image, cam, head, params),
    }


def weak_mask(
    image: np.ndarray,
    cam: np.ndarray,
    predicted_class: str,
    params: SegmentParams = SegmentParams(),
    kind: str = "grabcut",
) -> np.ndarray:
    """One mask of `segment` without computing the other: ``kind`` ``cam`` (the binarised map inside
    the head) or ``grabcut`` (refined). Empty for a ``notumor`` prediction."""
    if kind not in ("cam", "grabcut"):
        raise ValueError(f"kind must be cam or grabcut; received kind={kind!r}")
    if predicted_class == NO_TUMOUR:
        return np.zeros(np.asarray(cam).shape, bool)
    head = head_mask(image)
    if kind == "cam":
        return map_mask(image, cam, head, params)
    return grabcut_mask(image, cam, head, params)
