"""The figures of scans the book shows, rendered into ``results/<profile>/`` while the data are at hand.

A book built without the dataset (a reader's clone, GitHub Pages) shows these small JPEGs instead of
drawing them: the leakage audit's copies (``data/figures/duplicates.jpg``) and the best, median and
worst expert-mask galleries of the adopted weak mask (``segmentation/gallery_expert_<class>.jpg``,
low-resolution composites of BRISC 2025 test images, their expert masks and this project's maps and
masks; never the raw files). `render_figures` writes whichever of them its inputs allow and refreshes
their entries in ``manifest.json``; `tumorlens.experiments.collect.collect` calls it after copying the
runs, and ``tumorlens collect --profile P --only figures`` runs it alone (no run folders needed).

    written = render_figures("cpu")        # [Path("results/cpu/data/figures/duplicates.jpg"), ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config
from tumorlens.data.inventory import scan
from tumorlens.data.io import letterbox, read_image, unletterbox_mask, unletterbox_to_input
from tumorlens.data.leakage import AuditReport, audit
from tumorlens.experiments import published
from tumorlens.experiments.predict import Predictor
from tumorlens.experiments.rq import failure_analysis, scored_per_image
from tumorlens.explain.gallery import draw_galleries, image_sheet, jpeg_bytes, segmentation_gallery
from tumorlens.explain.ground_truth import mask_items_for
from tumorlens.explain.weak_masks import SegmentParams, weak_mask
from tumorlens.metrics.segmentation import dice
from tumorlens.records import read_rows
from tumorlens.utils.files import atomic_path, read_json

__all__ = [
    "FIGURES",
    "duplicate_copies",
    "write_duplicates",
    "write_expert_galleries",
    "write_failure_gallery",
    "render_figures",
]

#: The figures this module renders: file under ``results/<profile>/`` -> what it shows.
FIGURES = {
    "data/figures/duplicates.jpg": "Testing images with a copy in Training (each Testing image once, its closest "
    "Training copy of the same class beside it)",
    "segmentation/gallery_expert_<class>.jpg": "best, median and worst report-half image of the adopted weak "
    "mask, with the expert mask",
    "segmentation/gallery_failures.jpg": "per tumour class, the worst report-half images of each failure a mask "
    "method can fix (the map's peak off the lesion; on it but the outline wrong), redrawn with the published "
    "single model",
}


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 82) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".jpg") as tmp:
        tmp.write_bytes(jpeg_bytes(rgb, quality=quality))
    return path


def duplicate_copies(report: AuditReport, n: int = 6) -> list[dict]:
    """Up to ``n`` Testing images that have a copy in Training, each Testing image once, with its closest
    Training copy of the **same class** (a cross-class pair is a look-alike, not a copy): byte-identical
    copies first (half of ``n`` when there are enough), then near copies by falling correlation, the
    classes taken in turn. ``[{"a": testing path, "b": training path, "kind", "hamming", "correlation"}]``."""
    recs = report.records
    best: dict[int, tuple] = {}
    for i, j, kind, ham, corr in report.pairs:
        for t, o in ((i, j), (j, i)):
            if recs[t].split != "Testing" or recs[o].split != "Training" or recs[t].cls != recs[o].cls:
                continue
            key = (kind == "exact", corr, -ham)
            if t not in best or key > best[t][0]:
                best[t] = (key, o, kind, ham, corr)
    exact = [t for t, v in best.items() if v[2] == "exact"]
    near = sorted((t for t, v in best.items() if v[2] == "near"), key=lambda t: (-best[t][4], recs[t].rel))

    def by_class(ts: Sequence[int], k: int) -> list[int]:  # round-robin over the classes, in their order
        queues = {c: [t for t in ts if recs[t].cls == c] for c in CLASSES}
        out: list[int] = []
        while len(out) < k and any(queues.values()):
            for c in CLASSES:
                if queues[c] and len(out) < k:
                    out.append(queues[c].pop(0))
        return out

    picks = by_class(sorted(exact, key=lambda t: recs[t].rel), n // 2)
    picks += by_class(near, n - len(picks))
    used_b: set[int] = set()
    out = []
    for t in picks:
        _, o, kind, ham, corr = best[t]
        if o in used_b:  # one Training image shown once too
            continue
        used_b.add(o)
        out.append({"a": recs[t].rel, "b": recs[o].rel, "kind": kind, "hamming": int(ham), "correlation": corr})
    return out


def write_duplicates(root: str | Path, copies: Sequence[dict], out: str | Path, size: int = 224) -> Path | None:
    """Render `duplicate_copies` into ``out`` (a JPEG): two copies per row, each the Testing image and
    its Training copy, titled with the match (exact, or near with hash distance and correlation). None
    when none can be read."""
    images, titles = [], []
    for ex in copies:
        try:
            a = letterbox(read_image(Path(root) / ex["a"])[0], size)
            b = letterbox(read_image(Path(root) / ex["b"])[0], size)
        except (OSError, ValueError):
            continue
        match = "exact copy" if ex["kind"] == "exact" else f"near: d {ex['hamming']}, r {ex['correlation']:.2f}"
        images += [a, b]
        titles += [f"Testing {Path(ex['a']).name}", f"Training ({match})"]
    if not images:
        return None
    return _write_jpeg(Path(out), image_sheet(images, titles, cols=4, tile=160))


def _explained_image_size(res: Path, summary: dict, default: int) -> int:
    """The input size of the model the explain step explained (its run in the results), else ``default``."""
    model = str(summary.get("model") or "")
    parts = Path(model).parts
    if len(parts) >= 2 and parts[-1].startswith("seed-"):
        info = res / "variants" / parts[-2] / parts[-1] / "run.json"
        if info.is_file():
            return int(read_json(info, schema="run")["config"]["data"]["image_size"])
    return default


def write_expert_galleries(res: str | Path, cfg) -> list[Path]:
    """Draw the best / median / worst galleries of ``res/segmentation`` (``gallery.npz``: the picks' raw
    maps) against the expert masks ``cfg`` names (`mask_items_for`), with the adopted mask's thresholds,
    into ``segmentation/gallery_expert_<class>.jpg``. Nothing when the masks or the maps are absent."""
    seg = Path(res) / "segmentation"
    if not (seg / "gallery.npz").is_file() or not (seg / "summary.json").is_file():
        return []
    _, items = mask_items_for(cfg)
    if not items:
        return []
    summary = read_json(seg / "summary.json", schema="segmentation")
    size = _explained_image_size(Path(res), summary, cfg.data.image_size)
    galleries = draw_galleries(
        seg / "gallery.npz", {it.id: it for it in items}, size, SegmentParams(**summary["params"])
    )
    return [_write_jpeg(seg / f"gallery_expert_{cls}.jpg", rgb) for cls, rgb in sorted(galleries.items())]


def write_failure_gallery(res: str | Path, cfg, *, tolerance: float = 0.02) -> list[Path]:
    """Draw the failure gallery of ``res/segmentation`` (`tumorlens.experiments.rq.failure_analysis` of its
    ``per_image.csv``: per class, the worst images the map's peak misses and the worst it finds but outlines
    wrongly) against the expert masks, into ``segmentation/gallery_failures.jpg``. The maps are recomputed
    with the published single model and weak-mask network, the way ``tumorlens predict --segment`` makes them;
    each redrawn mask is scored again and the gallery is written only when every pick's Dice is within
    ``tolerance`` of the published one (else the published models are not the ones these results explain, and
    nothing is drawn). Nothing when the masks, the results or the published models are absent."""
    seg = Path(res) / "segmentation"
    if not (seg / "per_image.csv").is_file() or not (seg / "summary.json").is_file():
        return []
    _, items = mask_items_for(cfg)
    by_id = {it.id: it for it in items}
    summary = read_json(seg / "summary.json", schema="segmentation")
    kind, params = summary["mask"], SegmentParams(**summary["params"])
    scores = read_rows(seg / "per_image.csv")
    if not scored_per_image(scores):
        return []
    picks = [p for ps in failure_analysis(scores, kind)["worst"].values() for p in ps]
    picks = [p for p in picks if p["id"] in by_id]
    try:
        mf = published.read_manifest(cfg.profile)
    except published.PublishedModelError:
        return []
    if not picks or mf["single"] != "/".join(Path(summary["model"]).parts[-2:]):
        return []
    predictor = Predictor.published(profile=cfg.profile)
    size = predictor.image_size  # the published model's own input side
    rows = []
    for p in picks:
        it = by_id[p["id"]]
        arr, _ = read_image(it.image)
        img = letterbox(arr, size)
        m = cv2.imread(str(it.mask), cv2.IMREAD_GRAYSCALE)
        truth = cv2.resize(m, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_NEAREST) > 127
        probs, _, maps = predictor.predict(img[None], segment=True)
        pred = CLASSES[int(np.argmax(probs[0]))]
        mask = weak_mask(img, maps[0], pred, params, kind)
        again = dice(unletterbox_mask(mask, arr.shape[:2]), truth)
        if abs(again - p["dice"]) > tolerance or pred != p["predicted"]:
            print(
                f"figures: {p['id']} redrawn with the published models scores Dice {again:.3f} (called {pred}), the "
                f"results {p['dice']:.3f} (called {p['predicted']}): the published models are not the ones these "
                "results explain; failure gallery not drawn",
                file=sys.stderr,
            )
            return []
        title = f"{it.cls} {p['view']}: Dice {p['dice']:.2f}, {p['category']} (pred. {pred})"
        masks = (mask, None) if kind == "cam" else (None, mask)
        rows.append((title, img, maps[0], *masks, unletterbox_to_input(truth, size)))
    name = f"{summary['map']} ({'binarised' if kind == 'cam' else 'GrabCut'})"
    return [_write_jpeg(seg / "gallery_failures.jpg", segmentation_gallery(rows, tile=160, map_name=name))]


def _dataset_matches(res: Path, report) -> bool:
    """Whether the dataset at hand is the one the results were made from (``data/scan.json``'s identity)."""
    f = res / "data" / "scan.json"
    if not f.is_file():
        return False
    return read_json(f, schema="scan")["dataset"] == report.dataset()


def render_figures(profile: str, res: str | Path | None = None, *, show_progress: bool = False) -> list[Path]:
    """Render every figure of `FIGURES` whose inputs are at hand into ``res`` (default
    ``results/<profile>/``); returns the files written (the caller refreshes their ``manifest.json``
    entries: `tumorlens.experiments.collect.collect` does). The
    duplicates figure needs the dataset the results were made from (same identity as ``data/scan.json``);
    the expert galleries need the expert masks (`tumorlens.explain.ground_truth.mask_items_for`)."""
    cfg = load_config(profile)
    res = Path(res) if res else paths.results_root() / profile
    written: list[Path] = []
    root = Path(cfg.data_root)
    if (root / "Training").is_dir() and (res / "data" / "scan.json").is_file():
        report = scan(root, show_progress=show_progress)
        if _dataset_matches(res, report):
            a = cfg.audit
            rep = audit(
                report,
                thumb_size=a.thumb_size,
                hash_distance=a.hash_distance,
                correlation=a.correlation,
                show_progress=show_progress,
            )
            out = write_duplicates(root, duplicate_copies(rep), res / "data" / "figures" / "duplicates.jpg")
            written += [out] if out else []
        else:
            print(
                f"figures: the dataset at {root} is not the one of {res}/data/scan.json: duplicates not redrawn",
                file=sys.stderr,
            )
    written += write_expert_galleries(res, cfg)
    written += write_failure_gallery(res, cfg)
    return written
