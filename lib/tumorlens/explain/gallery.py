"""Pictures of explanations (render only): CAM overlays, mask panels, and the best/median/worst galleries."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens.data.io import letterbox, read_image, unletterbox_to_input
from tumorlens.explain.cam import upsample_normalise
from tumorlens.explain.ground_truth import MaskItem
from tumorlens.explain.weak_masks import SegmentParams, segment

__all__ = [
    "image_sheet",
    "overlay",
    "segmentation_gallery",
    "png_bytes",
    "jpeg_bytes",
    "gallery_picks",
    "draw_galleries",
]


def image_sheet(images: Sequence[np.ndarray], titles: Sequence[str], cols: int = 4, tile: int = 128) -> np.ndarray:
    """Images ``(H, W, 3)`` uint8 in a grid of ``cols`` columns, each resized to ``tile`` px with its
    title above it: one RGB uint8 image."""
    if len(images) != len(titles):
        raise ValueError(f"need one title per image; received {len(images)} images and {len(titles)} titles")
    if cols < 1:
        raise ValueError(f"cols must be >= 1; received cols={cols!r}")
    band = 18
    cells = []
    for img, title in zip(images, titles):
        img = np.asarray(img, np.uint8)
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        cell = np.full((band + tile, tile, 3), 255, np.uint8)
        cell[band:] = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(cell, title[:28], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    while len(cells) % cols:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.hstack(cells[i : i + cols]) for i in range(0, len(cells), cols)]
    return np.vstack(rows)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A CAM drawn over an image (jet colour map), uint8 RGB."""
    import cv2

    heat = cv2.applyColorMap(np.clip(cam * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)


def _mask_panel(image: np.ndarray, mask: np.ndarray, colour=(255, 60, 60)) -> np.ndarray:
    import cv2

    out = (image.astype(np.float32) * 0.6).astype(np.uint8)
    out[mask] = (0.5 * out[mask] + 0.5 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def segmentation_gallery(rows: Sequence[tuple], tile: int = 160, map_name: str = "map") -> np.ndarray:
    """Compose rows of ``(title, image, map, map_mask, grabcut_mask, expert_mask)`` into one RGB image:
    image | map overlay | binarised map | GrabCut mask | expert mask. A column whose masks are all None
    (no expert masks: a public gallery; or one mask kind only) is left out."""
    import cv2

    heads = ["image", map_name, "binarised map", "map + GrabCut", "expert mask"]
    keep = [0, 1] + [k for k in (2, 3, 4) if any(r[k + 1] is not None for r in rows)]
    colours = {2: (255, 200, 0), 3: (255, 60, 60), 4: (60, 220, 60)}
    out_rows = []
    for title, img, cam, *masks in rows:
        panels = [img, overlay(img, cam)] + [
            _mask_panel(img, m, colours[k + 2]) if m is not None else np.zeros_like(img) for k, m in enumerate(masks)
        ]
        tiles = [cv2.resize(panels[k], (tile, tile), interpolation=cv2.INTER_AREA) for k in keep]
        band = np.full((22, tile * len(tiles), 3), 255, np.uint8)
        cv2.putText(band, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        out_rows.append(np.vstack([band, np.hstack(tiles)]))
    header = np.full((22, tile * len(keep), 3), 235, np.uint8)
    for j, k in enumerate(keep):
        cv2.putText(header, heads[k], (j * tile + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, *out_rows])


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG-encode an RGB uint8 image (the galleries published with the results)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("could not encode the image as JPEG")
    return buf.tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG-encode an RGB uint8 image (for ``IPython.display.Image(data=...)``)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def gallery_picks(rows: Sequence[dict], kind: str = "grabcut") -> list[tuple[str, dict]]:
    """Per class, the best, median and worst image by the Dice of ``kind`` (``cam``: the binarised
    map, ``grabcut``: map + GrabCut): ``[(label, row), ...]``."""
    picks = []
    for cls in sorted({r["class"] for r in rows}):
        rs = sorted((r for r in rows if r["class"] == cls), key=lambda r: float(r[f"dice_{kind}"]))
        picks += [("best", rs[-1]), ("median", rs[len(rs) // 2]), ("worst", rs[0])]
    return picks


def draw_galleries(
    npz: str | Path, items: dict[str, MaskItem], image_size: int, params: SegmentParams
) -> dict[str, np.ndarray]:
    """Redraw the galleries from ``gallery.npz`` (the picks' raw CAMs) and the dataset's images and
    masks (``items`` by id): ``{class: RGB image}``. Images missing from ``items`` are skipped."""

    z = np.load(npz)
    if "probability" in z and bool(z["probability"]):  # the network's probabilities: resized, not rescaled
        cams = np.stack([cv2.resize(c, (image_size, image_size), interpolation=cv2.INTER_LINEAR) for c in z["cams"]])
    else:
        cams = upsample_normalise(z["cams"], (image_size, image_size))
    panels: dict[str, list] = {}
    for i, item_id in enumerate(z["ids"]):
        it = items.get(str(item_id))
        if it is None:
            continue
        arr, _ = read_image(it.image)
        img = letterbox(arr, image_size)
        m = cv2.imread(str(it.mask), cv2.IMREAD_GRAYSCALE)
        truth = unletterbox_to_input(
            cv2.resize(m, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_NEAREST) > 127, image_size
        )
        masks = segment(img, cams[i], str(z["predicted"][i]), params)
        panels.setdefault(str(z["classes"][i]), []).append(
            (
                f"{z['labels'][i]}: Dice {float(z['dice'][i]):.2f} (pred. {z['predicted'][i]})",
                img,
                cams[i],
                masks["cam"],
                masks["grabcut"],
                truth,
            )
        )
    name = str(z["name"]) if "name" in z else "Grad-CAM"
    return {cls: segmentation_gallery(p, map_name=name) for cls, p in panels.items()}
