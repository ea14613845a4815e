"""Benchmark (not a test): latency of predict + explain + segment for one image, as `tumorlens predict`.

    python benchmarks/explain_latency.py RUN_DIR [--segmentation DIR] [--images N] [--batch 16] [--out DIR]

RUN_DIR is a trained run (its ``model.keras`` and ``config.json``); the map, the mask and the
thresholds are the ones predict would use (``segment.json`` from the explain step, found beside the
model or given with ``--segmentation``; the weak-mask network when it is adopted). Images are the
run's dataset's Testing images at the run's input size (or phantoms for the smoke profile). Writes
``explain_latency_<profile>.json``. The target is at most 150 ms per image on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from tumorlens import paths
    from tumorlens.config import CLASSES, load_config
    from tumorlens.data import prepare
    from tumorlens.experiments.predict import Predictor
    from tumorlens.explain.weak_masks import weak_mask
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import read_json, write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--segmentation", default=None, help="a folder with segment.json (default: found beside the model)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
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

    parts = {"predict_and_maps": [], "mask": []}

    def pipeline(batch):
        t0 = time.perf_counter()
        probs, _, maps = predictor.predict(batch, explain=True, segment=True)
        t1 = time.perf_counter()
        for img, m, p in zip(batch, maps, probs):
            weak_mask(img, m, CLASSES[int(np.argmax(p))], sg.params, sg.mask)
        parts["predict_and_maps"].append((t1 - t0) / len(batch))
        parts["mask"].append((time.perf_counter() - t1) / len(batch))

    pipeline(x[:1])  # warm-up: builds the gradient function
    pipeline(x[: args.batch])
    single = []
    for v in parts.values():
        v.clear()
    for i in range(len(x)):
        t0 = time.perf_counter()
        pipeline(x[i : i + 1])
        single.append(time.perf_counter() - t0)
    breakdown = {k: 1000 * float(np.median(v)) for k, v in parts.items()}
    t0 = time.perf_counter()
    for s in range(0, len(x), args.batch):
        pipeline(x[s : s + args.batch])
    batched = time.perf_counter() - t0
    res = {
        "run_dir": args.run_dir,
        "profile": cfg.profile,
        "variant": predictor.model.name,
        "map_and_mask": sg.label,
        "segmentation": paths.relative(sg.source) if sg.source.endswith(".json") else sg.source,
        "image_size": cfg.data.image_size,
        "n_images": len(x),
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
        "target_ms": 150,
        "environment": environment(),
    }
    path = write_json(Path(args.out) / f"explain_latency_{cfg.profile}.json", res)
    print(
        f"{sg.label}: one image median {res['single_ms']['median']:.0f} ms (p90 {res['single_ms']['p90']:.0f} ms; "
        f"predict + maps {breakdown['predict_and_maps']:.0f} ms, mask {breakdown['mask']:.0f} ms); "
        f"batched x{args.batch}: {res['batched']['images_per_second']:.1f} images/s; wrote {path}"
    )


if __name__ == "__main__":
    main()
