"""Check (not a test): `tumorlens predict --segment` writes the masks the explain chapter scores.

    python benchmarks/predict_masks.py EXPLAIN_DIR [--out benchmarks/results]

EXPLAIN_DIR is an explain step's output (``summary.json``, ``segment.json``, ``tuning.json``; e.g.
``runs/cpu/explain``). The report half of the expert-mask images (every image not in the tuning
half) goes through `tumorlens.experiments.predict.predict_paths` — files in, PNG masks out, exactly
as a user runs it — and the written masks are scored against the expert masks. Writes
``predict_masks_<profile>.json``: Dice from predict's files next to the chapter's number for the
adopted mask; they should agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    from tumorlens import paths
    from tumorlens.config import load_config
    from tumorlens.experiments.predict import Predictor, predict_paths
    from tumorlens.explain.ground_truth import mask_items_for
    from tumorlens.explain.scoring import load_mask_set
    from tumorlens.metrics.segmentation import dice
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import read_json, write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("explain_dir")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    explain = Path(args.explain_dir)
    summary = read_json(explain / "summary.json", schema="segmentation")
    tune_ids = set(read_json(explain / "tuning.json", schema="tuning")["tune_ids"])
    seg = read_json(explain / "segment.json", schema="segment")
    cfg = load_config(args.profile)
    _, items = mask_items_for(cfg)
    report = [it for it in items if it.id not in tune_ids]
    model_run = paths.resolve(seg["model"])
    predictor = Predictor.load(model_run, segmentation=explain)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rep = predict_paths([it.image for it in report], predictor, tmp, segment=True, show_progress=False)
        seconds = time.perf_counter() - t0
        truths = load_mask_set(report, cfg.data.image_size).truths  # as the chapter reads them
        scores = [
            dice(cv2.imread(str(Path(tmp) / f"{it.image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE) > 127, truth)
            for it, truth in zip(report, truths)
        ]
    chapter = next(r for r in summary["methods"] if (r["map"], r["mask"]) == (summary["map"], summary["mask"]))
    res = {
        "explain_dir": str(paths.relative(explain)),
        "model": seg["model"],
        "map_and_mask": predictor.segmentation.label,
        "n_images": len(report),
        "n_predicted": rep.n_ok,
        "dice_mean_from_predict_files": float(np.mean(scores)),
        "dice_mean_in_chapter": chapter["dice_mean"],
        "abs_difference": abs(float(np.mean(scores)) - chapter["dice_mean"]),
        "predict_seconds": round(seconds, 1),
        "environment": environment(),
    }
    path = write_json(Path(args.out) / f"predict_masks_{cfg.profile}.json", res)
    print(
        f"{res['map_and_mask']}: Dice from predict's files {res['dice_mean_from_predict_files']:.4f}, "
        f"in the chapter {res['dice_mean_in_chapter']:.4f} ({len(report)} images); wrote {path}"
    )


if __name__ == "__main__":
    main()
