"""Scoring the weak masks against ground truth: expert masks (BRISC 2025) or the phantoms' own.

    items = brisc_items("../shared/data/brisc2025-seg-dev")      # or phantom_items(root)
    data = load_mask_set(items, 224)                            # images and masks, read once
    cams = explain_items(model, "efficientnet_lite0", items, 224, cam=CamSetting("layercam", "fusion"), data=data)
    tune, report = split_items(items, 0.5, seed=42)
    params, grid = tune_params(cams, tune)                      # thresholds chosen on `tune` only
    rows = score_items(cams, report, params)                    # per image: Dice, IoU, pointing game
    summary = summarise(rows)                                   # per class: mean, median, quartiles

`evaluate_segmentation` does this for every map setting in ``segment.compare`` (the paper's
Grad-CAM first) and for the weak-mask network (`tumorlens.explain.refine`, trained on pseudo-masks
of the Kaggle training split), and writes one comparison table (`method_table`).

Images are letterboxed to the model input, explained and segmented there, and the masks are mapped
back to the image's own resolution before they are compared with the expert mask (tumour where the
mask is > 127). Masks are only ever used for scoring and for choosing thresholds on the tuning part;
nothing is trained on them.
"""

from __future__ import annotations

import csv
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens import records
from tumorlens.config import CLASSES
from tumorlens.data.io import letterbox, read_image, unletterbox_cam, unletterbox_mask
from tumorlens.data.pipeline import load_images
from tumorlens.data.prepared import prepare
from tumorlens.explain.cam import CamSetting, cam_maps_many, predict_and_explain, upsample_normalise
from tumorlens.explain.gallery import draw_galleries, gallery_picks, jpeg_bytes, segmentation_gallery
from tumorlens.explain.ground_truth import MaskItem, mask_items_for, split_items
from tumorlens.explain.refine import (
    SEGMENTER_FILE,
    mask_channels,
    mask_probabilities,
    segmenter_outputs,
    train_segmenter,
    upsample_maps,
)
from tumorlens.explain.weak_masks import SegmentParams, grabcut_mask, head_mask, map_mask, segment, weak_mask
from tumorlens.metrics.segmentation import dice, iou, pointing_game
from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
from tumorlens.models.classifier import load_model
from tumorlens.paths import relative
from tumorlens.utils import determinism
from tumorlens.utils.environment import cpu_threads
from tumorlens.utils.files import atomic_path, write_json
from tumorlens.utils.progress import progress

#: The map name of the weak-mask network in tables and files.
NETWORK = "network"

__all__ = [
    "NETWORK",
    "MaskSet",
    "load_mask_set",
    "ItemCams",
    "explain_items",
    "explain_items_many",
    "network_items",
    "method_table",
    "best_row",
    "latency",
    "score_items",
    "centre_map",
    "tune_params",
    "summarise",
    "evaluate_segmentation",
    "localisation_ablation",
]


@dataclass
class MaskSet:
    """Items with ground truth, read once: letterboxed images and the masks at each image's own size."""

    items: list[MaskItem]
    images: np.ndarray  # uint8 (N, S, S, 3), letterboxed
    truths: list[np.ndarray]  # bool (H, W) at each image's own resolution
    shapes: list[tuple[int, int]]


def load_mask_set(items: Sequence[MaskItem], image_size: int) -> MaskSet:
    """Read, letterbox and pair every item with its mask (tumour where the mask is > 127)."""
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
    x = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    return MaskSet(list(items), x, truths, shapes)


@dataclass
class ItemCams:
    """Everything the scoring needs per item, computed once: images, maps, predictions, truth."""

    items: list[MaskItem]
    images: np.ndarray  # uint8 (N, S, S, 3), letterboxed
    cams: np.ndarray  # float32 (N, S, S), map of the predicted class
    cams_true: np.ndarray  # float32 (N, S, S), map of the true class (isolates segmentation from classification)
    cams_raw: np.ndarray  # float32 (N, h, w), the predicted class's map before upsampling (small: kept in results)
    probs: np.ndarray  # (N, 4)
    truths: list[np.ndarray]  # bool (H, W) at each image's own resolution
    shapes: list[tuple[int, int]]
    name: str = "gradcam@top"  # the map setting (`CamSetting.name`) or ``network``
    seconds: float = 0.0  # wall time of the maps of the predicted class, all items

    def index(self, subset: Sequence[MaskItem]) -> list[int]:
        pos = {it.id: i for i, it in enumerate(self.items)}
        return [pos[it.id] for it in subset]


def explain_items(
    model,
    backbone: str,
    items: Sequence[MaskItem],
    image_size: int,
    *,
    cam: CamSetting = CamSetting(),
    data: MaskSet | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
) -> ItemCams:
    """Letterbox, predict and compute maps (predicted and true class) for every item."""
    many = explain_items_many(
        model, backbone, items, image_size, [cam], data=data, batch_size=batch_size, show_progress=show_progress
    )
    return many[cam.name]


def explain_items_many(
    model,
    backbone: str,
    items: Sequence[MaskItem],
    image_size: int,
    settings: Sequence[CamSetting],
    *,
    data: MaskSet | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
) -> dict[str, ItemCams]:
    """`explain_items` for several map settings from shared passes (`cam_maps_many`: one forward/backward
    pass per batch for all of them). The true class's map is computed again only where the prediction
    is wrong: elsewhere it is the predicted class's map. Returns ``{setting name: ItemCams}``; each
    one's ``seconds`` is its share of the shared passes."""
    settings = list({cs.name: cs for cs in settings}.values())
    data = data or load_mask_set(items, image_size)
    x = data.images
    raws, probs = {cs.name: [] for cs in settings}, []
    t0 = time.perf_counter()
    for s in progress(
        range(0, len(x), batch_size),
        total=-(-len(x) // batch_size),
        desc=" + ".join(raws) if len(raws) <= 2 else f"{len(raws)} maps",
        unit="batch",
        disable=not show_progress,
    ):
        maps, p = cam_maps_many(model, x[s : s + batch_size], settings, backbone, None, batch_size=batch_size)
        probs.append(p)
        for name, m in maps.items():
            raws[name].append(m)
    seconds = time.perf_counter() - t0
    probs = np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)), np.float32)
    raw = {name: np.concatenate(r) if r else np.zeros((0, 1, 1), np.float32) for name, r in raws.items()}
    true_idx = np.array([CLASSES.index(it.cls) for it in data.items], int)
    wrong = np.flatnonzero(probs.argmax(1) != true_idx) if len(probs) else np.zeros(0, int)
    raw_true = {name: r.copy() for name, r in raw.items()}
    if len(wrong):
        maps, _ = cam_maps_many(model, x[wrong], settings, backbone, true_idx[wrong], batch_size=batch_size)
        for name, m in maps.items():
            raw_true[name][wrong] = m
    side = (image_size, image_size)
    return {
        cs.name: ItemCams(
            items=data.items,
            images=x,
            cams=upsample_normalise(raw[cs.name], side),
            cams_true=upsample_normalise(raw_true[cs.name], side),
            cams_raw=raw[cs.name],
            probs=probs,
            truths=data.truths,
            shapes=data.shapes,
            name=cs.name,
            seconds=seconds / len(settings),
        )
        for cs in settings
    }


def network_items(segmenter, data: MaskSet, batch_size: int = 16, *, flip: bool = False) -> ItemCams:
    """The weak-mask network's tumour probability as the map: a class-agnostic network's one map for
    the predicted and the true class alike (the classifier's prediction still gates it), a per-class
    network's map of the predicted class and of the true class."""
    t0 = time.perf_counter()
    probs, low = segmenter_outputs(segmenter, data.images, batch_size, flip=flip)
    maps = upsample_maps(mask_channels(probs, low), data.images.shape[1:3])
    seconds = time.perf_counter() - t0
    true_idx = [CLASSES.index(it.cls) for it in data.items]
    maps_true = maps if low.shape[-1] == 1 else upsample_maps(mask_channels(probs, low, true_idx), maps.shape[1:3])
    side = max(1, data.images.shape[1] // 4)
    low = np.stack([cv2.resize(m, (side, side), interpolation=cv2.INTER_AREA) for m in maps]) if len(maps) else maps
    return ItemCams(
        items=data.items,
        images=data.images,
        cams=maps,
        cams_true=maps_true,
        cams_raw=low.astype(np.float32),
        probs=probs,
        truths=data.truths,
        shapes=data.shapes,
        name=NETWORK,
        seconds=seconds,
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
        first = None
        for prefix, cam, cls in variants:
            if prefix and first is not None and cls == pred and np.array_equal(cam, ic.cams[i]):
                # a right call: the true class's map is the predicted one's, so are its masks and scores
                row |= {f"{prefix}{k}": v for k, v in first.items()}
                continue
            masks = segment(ic.images[i], cam, cls, params)
            for kind in ("cam", "grabcut"):
                full = unletterbox_mask(masks[kind], ic.shapes[i])
                row[f"{prefix}dice_{kind}"] = dice(full, truth)
                row[f"{prefix}iou_{kind}"] = iou(full, truth)
                if not prefix:  # the mask's area against the expert's (too large / too small in the failures)
                    row[f"area_{kind}"] = float(full.mean())
            # a notumor prediction localises nothing: it scores as a miss
            cam_full = unletterbox_cam(cam, ic.shapes[i]) if cls != "notumor" else np.zeros(ic.shapes[i], np.float32)
            row[f"{prefix}pointing"] = pointing_game(cam_full, truth)
            row[f"{prefix}pointing_near"] = pointing_game(cam_full, truth, tolerance)
            if not prefix:
                first = {k: row[k] for k in _MASK_SCORES}
        row["area_truth"] = float(np.asarray(truth, bool).mean())
        # a map-free baseline: "point" at the centre of the head, whatever the image shows
        centre = unletterbox_cam(centre_map(ic.images[i]), ic.shapes[i])
        row["centre_pointing"] = pointing_game(centre, truth)
        row["centre_pointing_near"] = pointing_game(centre, truth, tolerance)
        return row

    with ThreadPoolExecutor(cpu_threads()) as pool:  # OpenCV releases the GIL
        return list(pool.map(one, ic.index(subset if subset is not None else ic.items)))


@contextmanager
def _stage(seconds: dict, key: str):
    """Add the wall time of the ``with`` body to ``seconds[key]`` (one decimal)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = round(seconds.get(key, 0.0) + time.perf_counter() - t0, 1)


#: The per-image scores of one map's masks (`score_items`), each also kept with the ``oracle_`` prefix.
_MASK_SCORES = ("dice_cam", "iou_cam", "dice_grabcut", "iou_grabcut", "pointing", "pointing_near")


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
    ic: ItemCams,
    tune: Sequence[MaskItem],
    base: SegmentParams = SegmentParams(),
    show_progress: bool = False,
    *,
    screen: int = 4,
    keep: int = 4,
) -> tuple[SegmentParams, list[dict]]:
    """Choose the binarisation and the GrabCut levels by mean Dice on the tuning items (true-class CAMs,
    so classification errors do not steer the thresholds). Returns the chosen params and the grid.

    The map-only thresholds are cheap and all scored on every tuning item. The GrabCut settings (levels
    and mask seeds, `GRABCUT_LEVELS` and `_MASK_SEEDS`) cost ~50-100 ms an image each on 2 cores, so they are
    searched by successive halving: all scored on every ``screen``-th tuning item, the ``keep`` best of those then on
    every tuning item, and the best of these wins (``screen=1`` scores every setting on every item; so
    does a tuning part too small to screen, under 16 items after thinning). The explain step's cost per
    stage is ``seconds`` in its summary.json. Each grid row has
    ``screen_dice`` (the thinned part) and ``mean_dice`` (all tuning items; None when screened out)."""
    for name, v in (("screen", screen), ("keep", keep)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; received {name}={v!r}")
    grid = []
    thresholds = (
        [("otsu", 0.5)]
        + [("percentile", p) for p in (80.0, 85.0, 90.0, 95.0, 97.5, 99.0)]  # a tumour is ~2% of a BRISC slice
        + [("fixed", v) for v in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)]
    )
    best_cam = (-1.0, (*thresholds[0], False))
    for (method, value), largest in itertools.product(thresholds, (False, True)):
        p = replace(base, threshold=method, value=value, largest=largest)
        rows = _score_kind(ic, tune, p, "cam")
        grid.append({"step": "cam", "threshold": method, "value": value, "largest": largest, "mean_dice": rows})
        if rows > best_cam[0]:
            best_cam = (rows, (method, value, largest))
    p_cam = replace(base, threshold=best_cam[1][0], value=best_cam[1][1], largest=best_cam[1][2])
    # GrabCut seeded by the levels, or refining the chosen binarisation (seeds="mask")
    settings = [
        ({"seeds": "levels", "hi": hi, "mid": mid, "lo": lo}, replace(p_cam, hi=hi, mid=mid, lo=lo))
        for hi, mid, lo in GRABCUT_LEVELS
    ] + [
        ({"seeds": "mask", "ring": ring, "core": core}, replace(p_cam, seeds="mask", ring=ring, core=core))
        for ring, core in _MASK_SEEDS
    ]
    thin = list(tune)[::screen]
    screened = screen > 1 and len(thin) >= 16 and keep < len(settings)
    first = [
        _score_kind(ic, thin if screened else tune, p, "grabcut")
        for _, p in progress(settings, desc="tuning GrabCut", unit="setting", disable=not show_progress)
    ]
    order = sorted(range(len(settings)), key=lambda i: -first[i])
    full = (
        {i: _score_kind(ic, tune, settings[i][1], "grabcut") for i in order[:keep]}
        if screened
        else dict(enumerate(first))
    )
    for i, (row, _) in enumerate(settings):
        grid.append({"step": "grabcut", **row, "screen_dice": first[i] if screened else None, "mean_dice": full.get(i)})
    return settings[max(full, key=lambda i: (full[i], -i))][1], grid


#: (hi, mid, lo) levels of the level-seeded GrabCut tried on the tuning half.
GRABCUT_LEVELS = tuple(
    (hi, mid, lo) for hi, mid, lo in itertools.product((0.6, 0.75, 0.9), (0.3, 0.45, 0.6), (0.1, 0.2)) if lo < mid < hi
)
#: (ring, core) pixels of the mask-seeded GrabCut tried on the tuning half.
_MASK_SEEDS = tuple((ring, core) for ring in (8, 16, 24) for core in (0, 3))


def _score_kind(ic: ItemCams, subset: Sequence[MaskItem], params: SegmentParams, kind: str) -> float:

    def one(i: int) -> float:
        cam, img = ic.cams_true[i], ic.images[i]
        head = head_mask(img)
        m = map_mask(img, cam, head, params) if kind == "cam" else grabcut_mask(img, cam, head, params)
        return dice(unletterbox_mask(m, ic.shapes[i]), ic.truths[i])

    with ThreadPoolExecutor(cpu_threads()) as pool:  # OpenCV releases the GIL
        scores = list(pool.map(one, ic.index(subset)))
    return float(np.mean(scores)) if scores else 0.0


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


KINDS: tuple[str, ...] = ("cam", "grabcut")
_KIND_LABEL = {"cam": "map only", "grabcut": "map + GrabCut"}


def method_table(
    per_map: dict[str, list[dict]],
    *,
    paper: str = "gradcam@top",
    tune_scores: dict[str, dict] | None = None,
    latency_ms: dict[str, dict] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict]:
    """One row per map and mask kind (binarised map, map + GrabCut), scored on the same report items.

    Each row: Dice mean with its bootstrap 95% CI, median, IoU mean, per-class Dice means, the pointing
    game (strict, with CI; within tolerance) and its paired difference to the head-centre baseline,
    the paired Dice difference to the paper's row (``paper`` + GrabCut), the tuning-half Dice that
    chose the row's thresholds, and the median latency per image.

    Args:
        per_map: map name -> `score_items` rows (the same items, in the same order, for every map).
        paper: the map of the paper's pipeline (its GrabCut row is the reference).
        tune_scores: map name -> ``{"cam": dice, "grabcut": dice}`` on the tuning half.
        latency_ms: map name -> ``{"cam": ms, "grabcut": ms}`` (classify + map + mask, one image; for the
            network also the CAM predict draws beside its mask).
    """
    if paper not in per_map:
        raise ValueError(f"the paper's map {paper!r} is not among the scored maps {sorted(per_map)}")
    ids = [r["id"] for r in per_map[paper]]
    for name, rows in per_map.items():
        if [r["id"] for r in rows] != ids:
            raise ValueError(f"map {name!r} was scored on other items than {paper!r}")
    ref = np.array([r["dice_grabcut"] for r in per_map[paper]], float)
    out = []
    for name, rows in per_map.items():
        hits = np.array([r["pointing"] for r in rows], float)
        centre = np.array([r["centre_pointing"] for r in rows], float)
        pc = paired_mean_diff(hits, centre, n_boot=n_boot, seed=seed)
        pt = bootstrap_mean(hits, n_boot=n_boot, seed=seed)
        for kind in KINDS:
            d = np.array([r[f"dice_{kind}"] for r in rows], float)
            ci = bootstrap_mean(d, n_boot=n_boot, seed=seed)
            vs = paired_mean_diff(d, ref, n_boot=n_boot, seed=seed)
            row = {
                "map": name,
                "mask": kind,
                "label": f"{name}, {_KIND_LABEL[kind]}",
                "paper": name == paper and kind == "grabcut",
                "n": len(rows),
                "dice_mean": ci["value"],
                "dice_lo": ci["lo"],
                "dice_hi": ci["hi"],
                "dice_median": float(np.median(d)) if len(d) else float("nan"),
                "iou_mean": float(np.mean([r[f"iou_{kind}"] for r in rows])) if rows else float("nan"),
                "oracle_dice_mean": float(np.mean([r[f"oracle_dice_{kind}"] for r in rows]))
                if rows and f"oracle_dice_{kind}" in rows[0]
                else None,
                "dice_vs_paper": vs["diff"],
                "dice_vs_paper_lo": vs["lo"],
                "dice_vs_paper_hi": vs["hi"],
                "pointing": pt["value"],
                "pointing_lo": pt["lo"],
                "pointing_hi": pt["hi"],
                "pointing_near": float(np.mean([r["pointing_near"] for r in rows])) if rows else float("nan"),
                "centre_pointing": float(centre.mean()) if len(centre) else float("nan"),
                "pointing_vs_centre": pc["diff"],
                "pointing_vs_centre_lo": pc["lo"],
                "pointing_vs_centre_hi": pc["hi"],
                "tune_dice": (tune_scores or {}).get(name, {}).get(kind),
                "ms_per_image": (latency_ms or {}).get(name, {}).get(kind),
            }
            for cls in CLASSES:
                vals = [r[f"dice_{kind}"] for r in rows if r["class"] == cls]
                if vals:
                    row[f"dice_{cls}"] = float(np.mean(vals))
            out.append(row)
    return out


def best_row(table: Sequence[dict]) -> dict:
    """The row with the highest tuning-half Dice (the choice never looks at the report half)."""
    scored = [r for r in table if r.get("tune_dice") is not None]
    if not scored:
        raise ValueError("no row of the table has a tuning-half Dice")
    return max(scored, key=lambda r: r["tune_dice"])


def latency(predict_map, images: np.ndarray, params: SegmentParams, k: int = 20) -> dict[str, float]:
    """Median milliseconds per image of ``predict_map(one_image_batch) -> (probs, maps)`` followed by
    the binarised mask (``cam``) or the GrabCut mask (``grabcut``), one image at a time (as predict)."""
    if not len(images):
        return {kind: float("nan") for kind in KINDS}
    predict_map(images[:1])  # warm-up: tracing and first allocations
    times = {kind: [] for kind in KINDS}
    for img in images[:k]:
        t0 = time.perf_counter()
        probs, maps = predict_map(img[None])
        t_map = time.perf_counter() - t0
        pred = CLASSES[int(np.argmax(probs[0]))]
        t1 = time.perf_counter()
        head = head_mask(img)
        map_mask(img, maps[0], head, params)
        t_cam = time.perf_counter() - t1
        t2 = time.perf_counter()
        if pred != "notumor":
            grabcut_mask(img, maps[0], head, params)
        t_gc = time.perf_counter() - t2
        times["cam"].append(t_map + t_cam)
        times["grabcut"].append(t_map + t_cam + t_gc)
    return {kind: 1000 * float(np.median(v)) for kind, v in times.items()}


#: The paper's map: Grad-CAM on the last convolutional layer.
PAPER_MAP = CamSetting("gradcam", "top")


def adopted(section, table: Sequence[dict] | None = None) -> tuple[str, str]:
    """``(map, mask kind)`` a config's ``segment`` section adopts: its map setting (or ``network``)
    and ``cam`` (the binarised map) or ``grabcut``; for ``mask: auto`` the row of ``table`` with the
    best tuning-half Dice (`best_row`: chosen without looking at the report half)."""
    if section.mask == "auto":
        if not table:
            raise ValueError("segment.mask is auto: the comparison table (with tuning-half Dice) is needed")
        best = best_row(table)
        return best["map"], best["mask"]
    name = CamSetting.from_config(section).name
    return {
        "cam": (name, "cam"),
        "grabcut": (name, "grabcut"),
        "network": (NETWORK, "cam"),
        "network+grabcut": (NETWORK, "grabcut"),
    }[section.mask]


def evaluate_segmentation(
    cfg,
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    model=None,
    show_progress: bool = True,
    model_choice: dict | None = None,
) -> dict:
    """Score a trained run's weak masks against ground truth, for every map setting compared, and write the results.

    Ground truth: the phantoms' masks for ``data.source: phantoms``, else the expert masks
    (`default_mask_root`). Thresholds are tuned per map on ``segment.tune_fraction`` of the items (by
    class) and every reported number comes from the other part. Maps: the paper's Grad-CAM, each of
    ``segment.compare``, the configured one, and (``segment.network``) the weak-mask network trained
    on pseudo-masks of the training split made with the configured map and its tuned GrabCut levels.

    Writes into ``out_dir`` (default ``<run_dir>/segmentation``): ``summary.json`` (the adopted
    mask's scores per class, the comparison table, the row best on the tuning half),
    ``methods.csv`` (the table), ``per_image.csv`` (the adopted map), ``per_image_methods.csv``
    (every map), ``tuning.json``, ``segment.json`` (what `tumorlens predict` needs), ``gallery.npz``
    and ``gallery_<class>.png``; with the network also ``segmenter.keras`` and ``network.json``.
    """
    s = cfg.segment
    if s.mask == "auto" and not s.tune:  # settings that cannot work fail before any work
        raise ValueError("segment.mask is auto, which chooses on the tuning half, but segment.tune is false")
    if s.mask.startswith("network") and not s.network:
        raise ValueError(f"segment.mask is {s.mask!r} but segment.network is false: no network would be trained")
    # the weak-mask network is trained here: as deterministic as the classifiers (train.deterministic)
    determinism.configure(cfg.train.deterministic, cfg.train.threads)
    t_start = time.perf_counter()
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
    size, backbone = cfg.data.image_size, cfg.model.backbone
    data = load_mask_set(items, size)
    tune_part, report_part = split_items(items, s.tune_fraction, cfg.data.seed)
    configured = CamSetting.from_config(s)
    settings = list({c.name: c for c in [PAPER_MAP, *map(CamSetting.parse, s.compare), configured]}.values())
    base = SegmentParams.from_config(s)
    pos = {it.id: i for i, it in enumerate(items)}
    rep_images = data.images[[pos[it.id] for it in report_part[:20]]]

    per_map, params_by, tune_scores, lat, grids, ics = {}, {}, {}, {}, {}, {}
    seconds = {"load_s": round(time.perf_counter() - t_start, 1)}  # the step's cost by stage (summary.json)
    stage = partial(_stage, seconds)

    predictors = {}

    def score(ic: ItemCams, predict_map) -> None:
        predictors[ic.name] = predict_map
        with stage("tune_score_s"):
            params, grid = tune_params(ic, tune_part, base, show_progress) if s.tune else (base, [])
            per_map[ic.name] = score_items(ic, report_part, params, tolerance=s.pointing_tolerance)
        params_by[ic.name], grids[ic.name], ics[ic.name] = params, grid, ic
        tune_scores[ic.name] = {
            k: max((g["mean_dice"] for g in grid if g["step"] == k and g["mean_dice"] is not None), default=None)
            for k in KINDS
        }
        with stage("latency_s"):
            lat[ic.name] = latency(predict_map, rep_images, params)

    with stage("maps_s"):
        explained = explain_items_many(model, backbone, items, size, settings, data=data, show_progress=show_progress)
    for cs in settings:
        layers = cs.layer_names(backbone)
        score(
            explained.pop(cs.name),
            lambda x, cs=cs, layers=layers: predict_and_explain(model, x, layers, method=cs.method, flip=cs.flip),
        )
    network_info = None
    with stage("prepare_s"):
        prep = prepare(cfg, show_progress=False)  # the training split (network) and the test split (galleries)
    if s.network:

        def retune(segmenter):
            p, grid = tune_params(network_items(segmenter, data, flip=s.network_flip), tune_part, base, show_progress)
            step = s.pseudo_masks  # the tuning-half Dice of the kind of mask the next round learns
            return p, max(g["mean_dice"] for g in grid if g["step"] == step and g["mean_dice"] is not None)

        with stage("network_s"):
            seg, network_info = train_segmenter(
                cfg,
                model,
                configured,
                params_by[configured.name],
                out,
                retune=retune,
                prep=prep,
                show_progress=show_progress,
            )
        cam_layers = configured.layer_names(backbone)

        def predict_network(x):  # as predict --segment: the network's map for the mask, the CAM for the overlay
            predict_and_explain(model, x, cam_layers, method=configured.method, flip=configured.flip)
            return mask_probabilities(seg, x, flip=s.network_flip)

        with stage("network_maps_s"):
            net_items = network_items(seg, data, flip=s.network_flip)
        score(net_items, predict_network)

    table = method_table(per_map, paper=PAPER_MAP.name, tune_scores=tune_scores, latency_ms=lat)
    map_name, kind = adopted(s, table)
    rows = per_map[map_name]
    best = best_row(table) if s.tune else None
    with stage("public_galleries_s"):
        public = public_galleries(cfg, predictors[map_name], params_by[map_name], kind, map_name, out, prep=prep)
    summary = {
        "model": str(relative(run_dir)),
        "model_choice": model_choice,
        "source": source,
        "n_items": len(items),
        "n_tune": len(tune_part),
        "n_report": len(rows),
        "map": map_name,
        "mask": kind,
        "cam": configured.name,
        "params": params_by[map_name].__dict__,
        "tuned": s.tune,
        "pointing_tolerance_px": s.pointing_tolerance,
        "per_class": summarise(rows),
        "methods": table,
        "best_on_tuning": {"map": best["map"], "mask": best["mask"], "tune_dice": best["tune_dice"]} if best else None,
        "network": network_info,
        "public_galleries": {"files": public, "source": PUBLIC_SOURCE},
        "seconds": seconds,
    }
    write_json(out / "summary.json", summary, schema="segmentation")
    write_json(out / "tuning.json", {"tune_ids": [it.id for it in tune_part], "grid": grids}, schema="tuning")
    write_json(
        out / "segment.json",
        {
            "map": map_name,
            "mask": kind,
            "cam": configured.name,
            "params": params_by[map_name].__dict__,
            "cam_params": params_by[configured.name].__dict__,
            "segmenter": SEGMENTER_FILE if map_name == NETWORK else None,
            "network_flip": s.network_flip,
            "model": str(relative(run_dir)),
        },
        schema="segment",
    )
    _write_csv(out / "methods.csv", table)
    _write_csv(out / "per_image.csv", rows)
    _write_csv(out / "per_image_methods.csv", [{"map": m, **r} for m, rs in per_map.items() for r in rs])
    ic = ics[map_name]
    pos = {it.id: i for i, it in enumerate(ic.items)}
    picks = gallery_picks(rows, kind)
    np.savez(
        out / "gallery.npz",
        ids=np.array([r["id"] for _, r in picks]),
        labels=np.array([lab for lab, _ in picks]),
        classes=np.array([r["class"] for _, r in picks]),
        predicted=np.array([r["predicted"] for _, r in picks]),
        dice=np.array([r[f"dice_{kind}"] for _, r in picks]),
        cams=np.stack([ic.cams_raw[pos[r["id"]]] for _, r in picks]).astype(np.float32),
        probability=np.array(map_name == NETWORK),
        name=np.array(map_name),
    )
    for cls, png in draw_galleries(out / "gallery.npz", {it.id: it for it in items}, size, params_by[map_name]).items():
        cv2.imwrite(str(out / f"gallery_{cls}.png"), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
    return summary


def localisation_ablation(
    cfg,
    run_dirs: Sequence[str | Path],
    *,
    maps: Sequence[CamSetting] | None = None,
    n_boot: int = 2000,
    show_progress: bool = True,
) -> list[dict]:
    """Do the classifiers localise? The same expert-mask scoring for several trained runs (e.g. the
    standard head against heads that pool the strongest locations): per run and map, on the report
    part of the masks, the pointing game (strict and within ``segment.pointing_tolerance``), the mean
    Dice of the map alone and of map + GrabCut (each with thresholds tuned on the tuning part, as
    `evaluate_segmentation` tunes them), each with its bootstrap 95% interval, the paired difference
    from the first run's row of the same map, and the run's own classification scores (official
    split, de-duplicated, validation macro-F1) from its ``run.json``.

    Args:
        cfg: the settings (``segment`` and the mask source); each run is scored at its own input size.
        run_dirs: finished runs of one backbone; the first is the reference of the paired differences.
        maps: the map settings scored (default: the paper's Grad-CAM and the configured map).

    Returns:
        One row per run and map, in ``run_dirs`` order.
    """
    s = cfg.segment
    determinism.configure(cfg.train.deterministic, cfg.train.threads)
    source, items = mask_items_for(cfg)
    if not items:
        raise FileNotFoundError("no ground-truth masks found: set segment.masks (see data/README.md)")
    maps = list({c.name: c for c in (maps or [PAPER_MAP, CamSetting.from_config(s)])}.values())
    sets: dict[int, MaskSet] = {}  # the masks' images letterboxed at each run's own input size, once
    tune_part, report_part = split_items(items, s.tune_fraction, cfg.data.seed)
    base = SegmentParams.from_config(s)
    rows, reference = [], {}
    for run in map(Path, run_dirs):
        info = records.RunInfo.read(run)
        ranked, _ = records.rank_by_validation([run])
        backbone, size = info.backbone, info.image_size
        if size not in sets:
            sets[size] = load_mask_set(items, size)
        data = sets[size]
        model = load_model(run)
        explained = explain_items_many(model, backbone, items, size, maps, data=data, show_progress=show_progress)
        for cs in maps:
            ic = explained.pop(cs.name)
            params, _ = tune_params(ic, tune_part, base) if s.tune else (base, [])
            per = score_items(ic, report_part, params, tolerance=s.pointing_tolerance, oracle=False)
            values = {
                "pointing": [float(r["pointing"]) for r in per],
                "pointing_near": [float(r["pointing_near"]) for r in per],
                "dice_cam": [r["dice_cam"] for r in per],
                "dice_grabcut": [r["dice_grabcut"] for r in per],
            }
            summary = info.summary
            row = {
                "run": info.name,
                "pooling": info.pooling,
                "map": cs.name,
                "n_report": len(per),
                "source": source,
                "accuracy": summary.get("accuracy"),
                "dedup_accuracy": summary.get("dedup_accuracy"),
                "val_macro_f1": ranked[0]["val_macro_f1"] if ranked else None,
                "brisc_accuracy": float(np.mean([r["correct"] for r in per])) if per else None,
                "centre_pointing": _rate(per, "centre_pointing"),
            }
            for key, vals in values.items():
                row[key] = bootstrap_mean(vals, n_boot=n_boot, seed=cfg.data.seed)
                ref = reference.get((cs.name, key))
                row[f"{key}_diff"] = (
                    paired_mean_diff(vals, ref, n_boot=n_boot, seed=cfg.data.seed) if ref is not None else None
                )
            for key, vals in values.items():
                reference.setdefault((cs.name, key), vals)
            rows.append(row)
    return rows


#: Where the published galleries' images come from (they are committed with the results).
PUBLIC_SOURCE = (
    "Kaggle 'Brain Tumor MRI Dataset' (Masoud Nickparvar), Testing split, de-duplicated subset; released "
    "as public domain (CC0). Maps and masks are this project's; no expert masks are shown (BRISC 2025's "
    "licence for redistributing its images was not confirmed, so its images stay out of the repository)."
)


def public_galleries(
    cfg, predict_map, params: SegmentParams, kind: str, map_name: str, out: Path, per_class: int = 3, prep=None
) -> dict[str, str]:
    """Galleries that may be published with the results: per tumour class, the first ``per_class``
    (by file name) de-duplicated Testing images of the classification dataset — image, map overlay,
    the adopted weak mask; no expert masks. Written as ``gallery_public_<class>.jpg``; returns
    ``{class: file name}``."""
    prep = prep or prepare(cfg, show_progress=False)
    keep = set(prep.dedup_test)
    records = sorted((r for r in prep.splits["test"] if r.rel in keep), key=lambda r: r.rel)
    files = {}
    for cls in CLASSES:
        if cls == "notumor":
            continue
        chosen = [r for r in records if r.cls == cls][:per_class]
        if not chosen:
            continue
        images = load_images(chosen, cfg.data.image_size, cache=False, show_progress=False)
        probs, maps = predict_map(images)
        rows = []
        for r, img, p, m in zip(chosen, images, probs, maps):
            pred = CLASSES[int(np.argmax(p))]
            mask = weak_mask(img, m, pred, params, kind)
            title = f"{Path(r.rel).name}: predicted {pred} ({float(np.max(p)):.2f})"
            rows.append((title, img, m, mask if kind == "cam" else None, mask if kind == "grabcut" else None, None))
        name = f"gallery_public_{cls}.jpg"
        with atomic_path(out / name, ".jpg") as tmp:
            tmp.write_bytes(jpeg_bytes(segmentation_gallery(rows, tile=128, map_name=map_name)))
        files[cls] = name
    return files


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
