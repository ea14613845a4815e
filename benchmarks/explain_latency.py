"""Benchmark (not a test): latency of predict + explain + segment for one image, as `tumorlens predict`.

    python benchmarks/explain_latency.py [RUN_DIR | published] [--segmentation DIR] [--images N] [--batch 16]
                                         [--out DIR]

By default the **published** single model with its published map, mask and weak-mask network, exactly as
``tumorlens predict --segment`` runs it; RUN_DIR is a trained run instead (its ``model.keras`` and
``config.json``; ``segment.json`` from the explain step found beside the model or given with
``--segmentation``). Images are the dataset's Testing images at the model's input size (or phantoms for
the smoke profile). Both mask kinds are timed on the same maps, each as ``predict --segment`` runs it
(the weak-mask network's pass, no CAM): the adopted one (``segment.json``'s ``mask``) and the other
(``cam``: the map binarised, the faster; ``grabcut``: the map refined by GrabCut, the slower); then the
adopted one again as ``predict --explain --segment`` (the classifier's CAM pass added). ``tumorlens
predict`` records in each image's record which method made its mask (``mask_method``). Writes
``explain_latency_<profile>.json``. The target is a median of at most 300 ms per image on 2 CPU cores
for the default method (the weak-mask issue's cost bound).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

TARGET_MS = 300  # the weak-mask issue's bound on predict --segment, median per image on 2 cores


def main() -> None:
    from tumorlens import paths
    from tumorlens.config import CLASSES, load_config
    from tumorlens.data import prepare
    from tumorlens.experiments.predict import Predictor
    from tumorlens.explain.weak_masks import weak_mask
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import read_json, write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?", default="published", help="a trained run, or published (default)")
    ap.add_argument("--segmentation", default=None, help="a folder with segment.json (default: found beside the model)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if args.run_dir == "published":
        from tumorlens.experiments import published

        predictor = Predictor.published(segmentation=args.segmentation)
        cfg = published.recipe_config()
    else:
        info = read_json(Path(args.run_dir) / "config.json", schema="run")["config"]
        cfg = load_config(
            info["profile"],
            overrides={
                "model.backbone": info["model"]["backbone"],
                "model.modules": info["model"]["modules"],
                "data.image_size": info["data"]["image_size"],  # e.g. Lite1 at its native 240 px
            },
        )
        predictor = Predictor.load(args.run_dir, segmentation=args.segmentation)
    sg = predictor.segmentation
    x = prepare(cfg, show_progress=False).images("test", show_progress=False)[: args.images]

    kinds = [sg.mask] + [k for k in ("grabcut", "cam") if k != sg.mask]  # the default first, then the faster
    names = {k: replace(sg, mask=k).label for k in kinds}

    def pipeline(batch, kind, parts, explain=False):
        t0 = time.perf_counter()
        probs, _, maps = predictor.predict(batch, explain=explain, segment=True)
        t1 = time.perf_counter()
        for img, m, p in zip(batch, maps, probs):
            weak_mask(img, m, CLASSES[int(np.argmax(p))], sg.params, kind)
        parts["predict_and_maps"].append((t1 - t0) / len(batch))
        parts["mask"].append((time.perf_counter() - t1) / len(batch))

    warm = {"predict_and_maps": [], "mask": []}
    for explain in (False, True):  # warm-up: builds the gradient function
        pipeline(x[:1], sg.mask, warm, explain)
        pipeline(x[: args.batch], sg.mask, warm, explain)
    methods = {}
    # `predict --segment` with each mask kind, then `predict --explain --segment` (the CAM drawn too)
    for kind, explain in [(k, False) for k in kinds] + [(sg.mask, True)]:
        parts = {"predict_and_maps": [], "mask": []}
        single = []
        for i in range(len(x)):
            t0 = time.perf_counter()
            pipeline(x[i : i + 1], kind, parts, explain)
            single.append(time.perf_counter() - t0)
        breakdown = {k: 1000 * float(np.median(v)) for k, v in parts.items()}
        t0 = time.perf_counter()
        for s in range(0, len(x), args.batch):
            pipeline(x[s : s + args.batch], kind, {"predict_and_maps": [], "mask": []}, explain)
        batched = time.perf_counter() - t0
        methods[names[kind] + (" (with --explain)" if explain else "")] = {
            "mask_kind": kind,
            "explain": explain,
            "default": kind == sg.mask and not explain,
            "single_ms": {
                "median": 1000 * float(np.median(single)),
                "p90": 1000 * float(np.quantile(single, 0.9)),
                "predict_and_maps_median": breakdown["predict_and_maps"],
                "mask_median": breakdown["mask"],
            },
            "batched": {
                "batch_size": args.batch,
                "images_per_second": len(x) / batched,
                "ms_per_image": 1000 * batched / len(x),
            },
        }
    default = methods[names[sg.mask]]
    res = {
        "model": args.run_dir if args.run_dir == "published" else paths.relative(args.run_dir),
        "profile": cfg.profile,
        "variant": predictor.model.name,
        "map_and_mask": sg.label,
        "segmentation": paths.relative(sg.source) if sg.source.endswith(".json") else sg.source,
        "image_size": cfg.data.image_size,
        "n_images": len(x),
        "methods": methods,
        "single_ms": default["single_ms"],  # the default method's, as before
        "batched": default["batched"],
        "target_ms": TARGET_MS,
        "meets_target": default["single_ms"]["median"] <= TARGET_MS,
        "environment": environment(),
    }
    path = write_json(Path(args.out) / f"explain_latency_{cfg.profile}.json", res)
    for name, m in methods.items():
        print(
            f"{name}{' (default)' if m['default'] else ''}: one image median {m['single_ms']['median']:.0f} ms "
            f"(p90 {m['single_ms']['p90']:.0f} ms; predict + maps {m['single_ms']['predict_and_maps_median']:.0f} ms, "
            f"mask {m['single_ms']['mask_median']:.0f} ms); batched x{args.batch}: "
            f"{m['batched']['images_per_second']:.1f} images/s"
        )
    print(f"target: default median <= {TARGET_MS} ms: {'met' if res['meets_target'] else 'missed'}; wrote {path}")


if __name__ == "__main__":
    main()
