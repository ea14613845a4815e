"""Removing a region from a slice: the lesion-removal test and the counterfactual training images.

    region = dilate(lesion_mask, 0.03)                     # 3% of the side around the lesion
    healthy = remove(image, region, "telea")               # the lesion gone, the rest untouched
    ctrl = control_region(region, head_mask(image), rng)   # the same shape elsewhere in the head
    still_ill = remove(image, ctrl, "telea")               # the lesion kept: the control

Three ways to fill a region (`METHODS`), so that a test can use one that training never saw:

- ``telea``: OpenCV's fast-marching inpainting (Telea, 2004);
- ``ns``: OpenCV's Navier-Stokes inpainting (Bertalmio et al., 2001);
- ``ring``: no inpainting at all -- a smooth membrane fill from the ring of pixels around the region
  (normalised convolution at a scale set by the region's size), so its texture differs from both.

Images are uint8 ``(H, W)`` or ``(H, W, 3)``; masks bool ``(H, W)``. Every function is pure (the
randomness of `control_region` comes from the caller's ``numpy.random.Generator``).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "METHODS",
    "head_mask",
    "dilate",
    "remove",
    "control_region",
    "control_shares",
    "counterfactual_set",
    "transplant_lesion",
]

#: The region fills (see the module docstring).
METHODS = ("telea", "ns", "ring")


def head_mask(image: np.ndarray) -> np.ndarray:
    """A cheap foreground (head) mask: Otsu on the gray image, largest component, holes filled.

    ``image`` uint8 ``(H, W)`` or ``(H, W, 3)`` -> bool ``(H, W)``; empty for a flat image."""
    gray = image if image.ndim == 2 else cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
    gray = np.asarray(gray, np.uint8)
    if int(gray.max()) - int(gray.min()) < 2:
        return np.zeros(gray.shape, bool)
    blur = cv2.GaussianBlur(gray, (5, 5), 0)
    level, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = (blur > min(level, 0.5 * level + 10)).astype(np.uint8)  # low: keep dark brain tissue inside the skull
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros(gray.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (labels == largest).astype(np.uint8)
    # fill holes: flood the outside from a padded border; background pixels it cannot reach are inside
    padded = np.pad(comp, 1)
    cv2.floodFill(padded, np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8), (0, 0), 2)
    return comp.astype(bool) | (padded[1:-1, 1:-1] == 0)


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or (shape and mask.shape != tuple(shape[:2])):
        raise ValueError(f"{name} must be a 2-D array of the image's shape {tuple(shape[:2])}; received {mask.shape}")
    return mask.astype(bool)


def dilate(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` grown by ``fraction`` of the longer side (an elliptical structuring element; at least
    one pixel when ``fraction > 0``). ``fraction`` 0 returns the mask unchanged."""
    mask = _check_mask(mask, ())
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 0.5:
        raise ValueError(f"fraction must be a number in [0, 0.5); received fraction={fraction!r}")
    r = int(round(fraction * max(mask.shape))) if fraction else 0
    if r == 0 and fraction > 0:
        r = 1
    if r == 0 or not mask.any():
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _ring_fill(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """A smooth fill of ``region`` from its surroundings: normalised convolution of the known pixels at a
    Gaussian scale of about the region's radius (so the ring around it decides), lightly smoothed."""
    img = image.astype(np.float32)
    known = (~region).astype(np.float32)
    sigma = max(2.0, 0.6 * float(np.sqrt(region.sum() / np.pi)))
    k = int(2 * round(3 * sigma) + 1)
    chan = (lambda a: a) if img.ndim == 2 else (lambda a: a[..., None])
    num = cv2.GaussianBlur(img * chan(known), (k, k), sigma)
    den = chan(cv2.GaussianBlur(known, (k, k), sigma))
    filled = np.where(chan(region), num / np.maximum(den, 1e-6), img)
    filled = cv2.GaussianBlur(filled, (5, 5), 1.0)
    if filled.ndim == 2 and img.ndim == 3:
        filled = filled[..., None]
    return np.clip(np.rint(np.where(chan(region), filled, img)), 0, 255).astype(np.uint8)


def remove(image: np.ndarray, region: np.ndarray, method: str = "telea", radius: int | None = None) -> np.ndarray:
    """``image`` with ``region`` filled from its surroundings by ``method`` (one of `METHODS`).

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        region: bool ``(H, W)``: the pixels to replace (an empty region returns a copy of the image).
        method: ``telea`` | ``ns`` (OpenCV inpainting) | ``ring`` (a smooth fill, no inpainting).
        radius: the inpainting neighbourhood in pixels (default: 1% of the side, at least 3).

    Returns the filled image, same shape and dtype; pixels outside ``region`` are unchanged.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"image must be uint8 (H, W) or (H, W, 3); received {image.dtype} {image.shape}")
    region = _check_mask(region, image.shape, "region")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; received method={method!r}")
    if not region.any():
        return image.copy()
    if method == "ring":
        out = _ring_fill(image, region)
    else:
        r = radius if radius is not None else max(3, int(round(0.01 * max(image.shape[:2]))))
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        src = np.ascontiguousarray(image)
        out = cv2.inpaint(src, region.astype(np.uint8), r, flag)
        if out.ndim == 2 and image.ndim == 3:
            out = out[..., None]
    keep = ~region if image.ndim == 2 else ~region[..., None]
    return np.where(keep, image, out).astype(np.uint8)


def control_region(
    region: np.ndarray,
    head: np.ndarray,
    rng: np.random.Generator,
    *,
    avoid: np.ndarray | None = None,
    inside: float = 0.95,
    tries: int = 200,
) -> np.ndarray | None:
    """The same-shaped region moved elsewhere in the head: ``region`` translated by a random offset so
    that at least ``inside`` of it lies in ``head`` and none of it touches ``avoid`` (default: the
    region itself). None when no such place is found in ``tries`` draws (a region as large as the
    head, or an empty one)."""
    region = _check_mask(region, (), "region")
    head = _check_mask(head, region.shape, "head")
    avoid = region if avoid is None else _check_mask(avoid, region.shape, "avoid")
    if not region.any() or not head.any():
        return None
    ys, xs = np.nonzero(region)
    h, w = region.shape
    hy, hx = np.nonzero(head)
    # offsets that put the region's bounding box inside the image
    lo_y, hi_y = -int(ys.min()), h - 1 - int(ys.max())
    lo_x, hi_x = -int(xs.min()), w - 1 - int(xs.max())
    if lo_y > hi_y or lo_x > hi_x:
        return None
    cy, cx = ys.mean(), xs.mean()
    n = len(ys)
    for _ in range(tries):
        k = rng.integers(len(hy))  # a centre drawn from the head, so the region lands on tissue
        dy, dx = int(round(hy[k] - cy)), int(round(hx[k] - cx))
        if not (lo_y <= dy <= hi_y and lo_x <= dx <= hi_x) or (dy == 0 and dx == 0):
            continue
        ty, tx = ys + dy, xs + dx
        if avoid[ty, tx].any() or head[ty, tx].sum() < inside * n:
            continue
        out = np.zeros_like(region)
        out[ty, tx] = True
        return out
    return None


def control_shares(n_notumor: int, n_counterfactual: int, notumor_share: float) -> tuple[float, float]:
    """``(tumour-class share, no-tumour share)`` of original images that get a control removal so that
    every class holds the same share of images with a removed region: all ``n_counterfactual`` added
    no-tumour images have one, so the tumour classes need ``(n_cf + s n_no) / (n_cf + n_no)`` for a
    no-tumour share ``s`` (capped at 1; then the no-tumour share is what is left to balance)."""
    if not 0 <= notumor_share <= 1:
        raise ValueError(f"notumor_share must be in [0, 1]; received {notumor_share!r}")
    total = n_counterfactual + n_notumor
    if total == 0 or notumor_share == 0:
        return 0.0, 0.0
    t = (n_counterfactual + notumor_share * n_notumor) / total
    return min(1.0, t), notumor_share


def counterfactual_set(
    images: np.ndarray,
    labels: np.ndarray,
    lesions: dict[int, np.ndarray],
    *,
    notumor: int,
    share: float = 1.0,
    dilation: float = 0.05,
    method: str = "ns",
    control: float = 0.5,
    transplant: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Training images with counterfactuals: each lesion removed becomes a *no tumour* image, and
    same-shaped control removals (label kept) spread over every class so that a removed region is
    not itself a no-tumour cue.

    Args:
        images: uint8 ``(N, S, S, 3)`` training images; labels: ``(N,)`` class indices.
        lesions: ``{index: bool (S, S) mask}`` -- the tumour images whose (weak) lesion mask is trusted.
        notumor: the no-tumour class index.
        share: the fraction of ``lesions`` (a seeded draw) turned into counterfactuals.
        dilation, method: how each region is grown and filled (`dilate`, `remove`).
        control: the share of original no-tumour images given a control removal (the tumour classes'
            share follows from it, `control_shares`); 0: no controls.
        transplant: the share of no-tumour images that also appear with a trusted lesion pasted into
            their head (`transplant_lesion`), labelled with the lesion's class (the other direction: a
            lesion on a healthy slice of any look makes a tumour).
        seed: the draws (which lesions, which images get controls, where the controls go).

    Returns ``(images', labels', record)``: the originals (controls applied in place) followed by the
    counterfactuals; ``record`` counts what was made (``counterfactuals``, ``controls`` per class,
    ``no_place``: controls that found no place) and the index of each counterfactual's source.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8 or len(labels) != len(images):
        raise ValueError(f"images must be uint8 (N, S, S, 3) with one label each; received {images.shape}")
    for name, v in (("share", share), ("control", control)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must be in [0, 1]; received {name}={v!r}")
    rng = np.random.default_rng(seed)
    keys = sorted(lesions)
    bad = [k for k in keys if labels[k] == notumor]
    if bad:
        raise ValueError(f"lesion masks given for no-tumour images (indices {bad[:5]}...)")
    chosen = sorted(rng.choice(keys, size=int(round(share * len(keys))), replace=False).tolist()) if keys else []
    regions = {k: dilate(lesions[k], dilation) for k in chosen}
    regions = {k: r for k, r in regions.items() if r.any()}
    cf = [remove(images[k], regions[k], method) for k in regions]
    out = images.copy()
    n_no = int((labels == notumor).sum())
    c_tumour, c_no = control_shares(n_no, len(cf), control)
    shapes = [dilate(lesions[k], dilation) for k in keys] or [None]
    made: dict[int, int] = {}
    no_place = 0
    for i in range(len(images)):
        is_no = labels[i] == notumor
        if rng.random() >= (c_no if is_no else c_tumour):
            continue
        if is_no or i not in lesions:  # a shape borrowed from a lesion, placed anywhere in the head
            shape = shapes[int(rng.integers(len(shapes)))]
            avoid = np.zeros(images.shape[1:3], bool)
        else:
            shape = dilate(lesions[i], dilation)
            avoid = shape
        if shape is None or not shape.any():
            no_place += 1
            continue
        region = control_region(shape, head_mask(images[i]), rng, avoid=avoid if avoid.any() else None)
        if region is None:
            no_place += 1
            continue
        out[i] = remove(images[i], region, method)
        made[int(labels[i])] = made.get(int(labels[i]), 0) + 1
    pasted, pasted_y = [], []
    if transplant and keys:
        for i in np.flatnonzero(labels == notumor):
            if rng.random() >= transplant:
                continue
            k = int(keys[int(rng.integers(len(keys)))])
            img = transplant_lesion(images[k], lesions[k], images[i], rng)
            if img is not None:
                pasted.append(img)
                pasted_y.append(labels[k])
    extra = cf + pasted
    x = np.concatenate([out, np.stack(extra)]) if extra else out
    y = np.concatenate([labels, np.full(len(cf), notumor, labels.dtype), np.asarray(pasted_y, labels.dtype)])
    record = {
        "counterfactuals": len(cf),
        "transplants": len(pasted),
        "sources": [int(k) for k in regions],
        "controls": {str(k): v for k, v in sorted(made.items())},
        "control_shares": {"tumour": round(c_tumour, 4), "notumor": round(c_no, 4)},
        "no_place": no_place,
    }
    return x, y, record


def transplant_lesion(
    source: np.ndarray, lesion: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> np.ndarray | None:
    """``target`` with ``source``'s lesion (bool mask ``lesion``) pasted into its head at a random place by
    Poisson blending (`cv2.seamlessClone`), its grey levels scaled to the target's head. The blended
    region is the lesion grown by 3% of the side and at least 6 pixels: blending keeps the gradients
    inside the region, so one that ended on the lesion's border would blend the lesion away. None when
    the lesion is empty or finds no place inside the target's head."""
    lesion = _check_mask(lesion, source.shape, "lesion")
    if not lesion.any():
        return None
    lesion = dilate(lesion, max(0.03, 6.5 / max(lesion.shape)))
    head = head_mask(target)
    place = control_region(lesion, head, rng, avoid=np.zeros_like(lesion), inside=1.0)
    if place is None or not lesion.any():
        return None
    src = source.astype(np.float32)
    t_head, s_head = head_mask(target), head_mask(source)
    if s_head.any() and t_head.any():  # the lesion keeps its contrast to its own tissue, at the target's level
        src = src * (target[t_head].mean() / max(1.0, source[s_head].mean()))
    src = np.clip(src, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(lesion)
    ty, tx = np.nonzero(place)
    dy, dx = int(ty.min() - ys.min()), int(tx.min() - xs.min())
    shifted = np.zeros_like(src)
    h, w = lesion.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    shifted[y0 + dy : y1 + dy, x0 + dx : x1 + dx] = src[y0:y1, x0:x1]
    mask = place.astype(np.uint8) * 255
    cy, cx = (ty.min() + ty.max() + 1) // 2, (tx.min() + tx.max() + 1) // 2
    try:
        out = cv2.seamlessClone(shifted, np.ascontiguousarray(target), mask, (int(cx), int(cy)), cv2.NORMAL_CLONE)
    except cv2.error:
        return None
    return np.where(place[..., None], out, target).astype(np.uint8)
