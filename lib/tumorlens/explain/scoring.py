"""Scoring the weak masks against ground truth: expert masks (BRISC 2025) or the phantoms' own.

    items = brisc_items("../shared/data/brisc2025-seg-dev")      # or phantom_items(root)
    cams = explain_items(model, "efficientnet_lite0", items, 224)
    tune, report = split_items(items, 0.5, seed=42)
    params = tune_params(cams, tune)                            # thresholds chosen on `tune` only
    rows = score_items(cams, report, params)                    # per image: Dice, IoU, pointing game
    summary = summarise(rows)                                   # per class: mean, median, quartiles

Images are letterboxed to the model input, explained and segmented there, and the masks are mapped
back to the image's own resolution before they are compared with the expert mask (tumour where the
mask is > 127). Masks are only ever used for scoring and for choosing thresholds on the tuning part;
nothing is trained on them.
"""

from __future__ import annotations

import csv
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.io import letterbox, read_image, unletterbox_cam, unletterbox_mask
from tumorlens.explain.cam import cam_maps, grad_cam, upsample_normalise
from tumorlens.explain.gallery import draw_galleries, gallery_picks
from tumorlens.explain.ground_truth import MaskItem, mask_items_for, split_items
from tumorlens.explain.weak_masks import SegmentParams, binarise, grabcut_mask, head_mask, segment
from tumorlens.metrics.segmentation import dice, iou, pointing_game
from tumorlens.models.backbones import get_spec
from tumorlens.models.classifier import load_model
from tumorlens.paths import relative
from tumorlens.utils.files import write_json
from tumorlens.utils.progress import progress

__all__ = [
    "ItemCams",
    "explain_items",
    "score_items",
    "centre_map",
    "tune_params",
    "summarise",
    "evaluate_segmentation",
]


@dataclass
class ItemCams:
    """Everything the scoring needs per item, computed once: images, CAMs, predictions, truth."""

    items: list[MaskItem]
    images: np.ndarray  # uint8 (N, S, S, 3), letterboxed
    cams: np.ndarray  # float32 (N, S, S), CAM of the predicted class
    cams_true: np.ndarray  # float32 (N, S, S), CAM of the true class (isolates segmentation from classification)
    cams_raw: np.ndarray  # float32 (N, h, w), the predicted class's map before upsampling (small: kept in results)
    probs: np.ndarray  # (N, 4)
    truths: list[np.ndarray]  # bool (H, W) at each image's own resolution
    shapes: list[tuple[int, int]]

    def index(self, subset: Sequence[MaskItem]) -> list[int]:
        pos = {it.id: i for i, it in enumerate(self.items)}
        return [pos[it.id] for it in subset]


def explain_items(
    model,
    backbone: str,
    items: Sequence[MaskItem],
    image_size: int,
    *,
    method: str = "gradcam",
    batch_size: int = 16,
    show_progress: bool = True,
) -> ItemCams:
    """Letterbox, predict and compute CAMs (predicted and true class) for every item."""

    target = get_spec(backbone).target_layer
    images, truths, shapes = [], [], []
    for it in items:
        arr, _ = read_image(it.image)
        images.append(letterbox(arr, image_size))
        shapes.append(arr.shape[:2])
        m = cv2.imread(str(it.mask), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise ValueError(f"{it.mask}: cannot read the mask")
        if m.shape != arr.shape[:2]:
            m = cv2.resize(m, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_NEAREST)
        truths.append(m > 127)
    x = np.stack(images)
    probs, raws = [], []
    for s in progress(
        range(0, len(x), batch_size),
        total=-(-len(x) // batch_size),
        desc="Grad-CAM",
        unit="batch",
        disable=not show_progress,
    ):
        r, p = cam_maps(model, x[s : s + batch_size], target, None, method=method, batch_size=batch_size)
        probs.append(p)
        raws.append(r)
    raw = np.concatenate(raws)
    cams = upsample_normalise(raw, (image_size, image_size))
    true_idx = [CLASSES.index(it.cls) for it in items]
    cams_true = grad_cam(model, x, target, true_idx, method=method, batch_size=batch_size)
    return ItemCams(
        items=list(items),
        images=x,
        cams=cams,
        cams_true=cams_true,
        cams_raw=raw,
        probs=np.concatenate(probs),
        truths=truths,
        shapes=shapes,
    )


def score_items(
    ic: ItemCams,
    subset: Sequence[MaskItem] | None = None,
    params: SegmentParams = SegmentParams(),
    *,
    tolerance: int = 0,
    oracle: bool = True,
) -> list[dict]:
    """Per-image scores of the CAM-only and CAM + GrabCut masks against the truth."""

    def one(i: int) -> dict:
        it = ic.items[i]
        pred = CLASSES[int(np.argmax(ic.probs[i]))]
        truth = ic.truths[i]
        row = {
            "id": it.id,
            "class": it.cls,
            "view": it.view,
            "predicted": pred,
            "correct": pred == it.cls,
            "p_true": float(ic.probs[i][CLASSES.index(it.cls)]),
        }
        variants = [("", ic.cams[i], pred)] + ([("oracle_", ic.cams_true[i], it.cls)] if oracle else [])
        for prefix, cam, cls in variants:
            masks = segment(ic.images[i], cam, cls, params)
            for kind in ("cam", "grabcut"):
                full = unletterbox_mask(masks[kind], ic.shapes[i])
                row[f"{prefix}dice_{kind}"] = dice(full, truth)
                row[f"{prefix}iou_{kind}"] = iou(full, truth)
            # a notumor prediction localises nothing: it scores as a miss
            cam_full = unletterbox_cam(cam, ic.shapes[i]) if cls != "notumor" else np.zeros(ic.shapes[i], np.float32)
            row[f"{prefix}pointing"] = pointing_game(cam_full, truth)
            row[f"{prefix}pointing_near"] = pointing_game(cam_full, truth, tolerance)
        # a map-free baseline: "point" at the centre of the head, whatever the image shows
        centre = unletterbox_cam(centre_map(ic.images[i]), ic.shapes[i])
        row["centre_pointing"] = pointing_game(centre, truth)
        row["centre_pointing_near"] = pointing_game(centre, truth, tolerance)
        return row

    with ThreadPoolExecutor(_workers()) as pool:  # OpenCV releases the GIL
        return list(pool.map(one, ic.index(subset if subset is not None else ic.items)))


def centre_map(image: np.ndarray) -> np.ndarray:
    """A map peaking at the centroid of the head mask (the image centre when there is no head): the
    pointing game's map-free baseline, shape ``image.shape[:2]``, values in [0, 1]."""

    h, w = image.shape[:2]
    head = head_mask(image)
    ys, xs = np.nonzero(head)
    cy, cx = (float(ys.mean()), float(xs.mean())) if len(ys) else ((h - 1) / 2, (w - 1) / 2)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2)).astype(np.float32)


def tune_params(
    ic: ItemCams, tune: Sequence[MaskItem], base: SegmentParams = SegmentParams(), show_progress: bool = False
) -> tuple[SegmentParams, list[dict]]:
    """Choose the binarisation and the GrabCut levels by mean Dice on the tuning items (true-class CAMs,
    so classification errors do not steer the thresholds). Returns the chosen params and the grid."""
    grid = []
    thresholds = (
        [("otsu", 0.5)]
        + [("percentile", p) for p in (80.0, 85.0, 90.0, 95.0)]
        + [("fixed", v) for v in (0.3, 0.4, 0.5, 0.6, 0.7)]
    )
    best_cam = (-1.0, thresholds[0])
    for method, value in thresholds:
        p = replace(base, threshold=method, value=value)
        rows = _score_kind(ic, tune, p, "cam")
        grid.append({"step": "cam", "threshold": method, "value": value, "mean_dice": rows})
        if rows > best_cam[0]:
            best_cam = (rows, (method, value))
    p_cam = replace(base, threshold=best_cam[1][0], value=best_cam[1][1])
    best_gc = (-1.0, (base.hi, base.mid, base.lo))
    triples = [
        (hi, mid, lo) for hi, mid, lo in itertools.product((0.6, 0.75, 0.9), (0.3, 0.45), (0.1, 0.2)) if lo < mid < hi
    ]
    for hi, mid, lo in progress(triples, desc="tuning GrabCut", unit="setting", disable=not show_progress):
        score = _score_kind(ic, tune, replace(p_cam, hi=hi, mid=mid, lo=lo), "grabcut")
        grid.append({"step": "grabcut", "hi": hi, "mid": mid, "lo": lo, "mean_dice": score})
        if score > best_gc[0]:
            best_gc = (score, (hi, mid, lo))
    hi, mid, lo = best_gc[1]
    return replace(p_cam, hi=hi, mid=mid, lo=lo), grid


def _score_kind(ic: ItemCams, subset: Sequence[MaskItem], params: SegmentParams, kind: str) -> float:

    def one(i: int) -> float:
        cam, img = ic.cams_true[i], ic.images[i]
        head = head_mask(img)
        m = (
            binarise(cam, params.threshold, params.value) & head
            if kind == "cam"
            else grabcut_mask(img, cam, head, params)
        )
        return dice(unletterbox_mask(m, ic.shapes[i]), ic.truths[i])

    with ThreadPoolExecutor(_workers()) as pool:  # OpenCV releases the GIL
        scores = list(pool.map(one, ic.index(subset)))
    return float(np.mean(scores)) if scores else 0.0


def _workers() -> int:

    return max(1, min(8, os.cpu_count() or 1))


def summarise(rows: Sequence[dict]) -> dict:
    """Per class and overall: n, mean / median / quartiles of Dice and IoU (CAM-only and GrabCut),
    pointing-game rates (strict: the peak inside the mask; ``_near``: within ``segment.pointing_tolerance``
    pixels; ``centre_``: the map-free baseline that points at the head's centre), classification accuracy
    on these images."""

    def stats(vals):
        v = np.asarray(vals, float)
        if not len(v):
            return {}
        return {
            "mean": float(v.mean()),
            "median": float(np.median(v)),
            "q1": float(np.quantile(v, 0.25)),
            "q3": float(np.quantile(v, 0.75)),
        }

    groups = {c: [r for r in rows if r["class"] == c] for c in CLASSES if any(r["class"] == c for r in rows)}
    groups["all"] = list(rows)
    out = {}
    for name, rs in groups.items():
        d = {"n": len(rs), "accuracy": float(np.mean([r["correct"] for r in rs])) if rs else None}
        for prefix in ("", "oracle_"):
            if rs and f"{prefix}dice_cam" not in rs[0]:
                continue
            for kind in ("cam", "grabcut"):
                for metric in ("dice", "iou"):
                    d[f"{prefix}{metric}_{kind}"] = stats([r[f"{prefix}{metric}_{kind}"] for r in rs])
            for key in (f"{prefix}pointing", f"{prefix}pointing_near"):
                d[key] = _rate(rs, key)
        for key in ("centre_pointing", "centre_pointing_near"):
            d[key] = _rate(rs, key)
        out[name] = d
    return out


def _rate(rows: Sequence[dict], key: str) -> float | None:
    """Share of rows whose ``key`` is true; None for no rows."""
    return float(np.mean([r[key] for r in rows])) if rows else None


def evaluate_segmentation(
    cfg, run_dir: str | Path, *, out_dir: str | Path | None = None, model=None, show_progress: bool = True
) -> dict:
    """Score a trained run's Grad-CAM (+ GrabCut) masks against ground truth and write the results.

    Ground truth: the phantoms' masks for ``data.source: phantoms``, else the expert masks
    (`default_mask_root`). Thresholds are tuned on ``segment.tune_fraction`` of the items (by class)
    and every reported number comes from the other part. Writes into ``out_dir`` (default
    ``<run_dir>/segmentation``): ``per_image.csv``, ``summary.json``, ``tuning.json`` and
    ``gallery_<class>.png`` (best / median / worst by GrabCut Dice).
    """

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "segmentation"
    out.mkdir(parents=True, exist_ok=True)
    model = model or load_model(run_dir)
    source, items = mask_items_for(cfg)
    if not items:
        raise FileNotFoundError(
            "no ground-truth masks found: set segment.masks in _config.yml or TUMORLENS_MASKS to "
            "a folder in the BRISC 2025 layout (images/, masks/); see data/README.md"
        )
    s = cfg.segment
    ic = explain_items(model, cfg.model.backbone, items, cfg.data.image_size, method=s.cam, show_progress=show_progress)
    tune_part, report_part = split_items(items, s.tune_fraction, cfg.data.seed)
    params, grid = (
        tune_params(ic, tune_part, SegmentParams.from_config(s), show_progress)
        if s.tune
        else (SegmentParams.from_config(s), [])
    )
    rows = score_items(ic, report_part, params, tolerance=s.pointing_tolerance)

    summary = {
        "model": str(relative(run_dir)),
        "source": source,
        "n_items": len(items),
        "n_tune": len(tune_part),
        "n_report": len(rows),
        "cam": s.cam,
        "params": params.__dict__,
        "tuned": s.tune,
        "pointing_tolerance_px": s.pointing_tolerance,
        "per_class": summarise(rows),
    }
    write_json(out / "summary.json", summary)
    write_json(out / "tuning.json", {"tune_ids": [it.id for it in tune_part], "grid": grid})
    with open(out / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pos = {it.id: i for i, it in enumerate(ic.items)}
    picks = gallery_picks(rows)
    np.savez(
        out / "gallery.npz",
        ids=np.array([r["id"] for _, r in picks]),
        labels=np.array([lab for lab, _ in picks]),
        classes=np.array([r["class"] for _, r in picks]),
        predicted=np.array([r["predicted"] for _, r in picks]),
        dice=np.array([r["dice_grabcut"] for _, r in picks]),
        cams=np.stack([ic.cams_raw[pos[r["id"]]] for _, r in picks]).astype(np.float32),
    )
    for cls, png in draw_galleries(
        out / "gallery.npz", {it.id: it for it in items}, cfg.data.image_size, params
    ).items():
        cv2.imwrite(str(out / f"gallery_{cls}.png"), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
    return summary
