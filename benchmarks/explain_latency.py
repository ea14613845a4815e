"""Benchmark (not a test): latency of predict + Grad-CAM + GrabCut for one 224 px image, and batched throughput.

    python benchmarks/explain_latency.py RUN_DIR [--images N] [--batch 16] [--out benchmarks/results]

RUN_DIR is a trained run (its ``model.keras`` and ``config.json``). Images are the run's dataset's
Testing images (or phantoms for the smoke profile). Writes ``explain_latency_<profile>.json``.
The issue's target is at most 150 ms per image on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from tumorlens.config import CLASSES, load_config
    from tumorlens.data import prepare
    from tumorlens.explain.cam import predict_and_explain
    from tumorlens.explain.weak_masks import SegmentParams, segment
    from tumorlens.models.backbones import get_spec
    from tumorlens.models.classifier import load_model
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    info = json.loads((Path(args.run_dir) / "config.json").read_text())["config"]
    cfg = load_config(
        info["profile"],
        overrides={"model.backbone": info["model"]["backbone"], "model.modules": info["model"]["modules"]},
    )
    model = load_model(args.run_dir)
    target = get_spec(cfg.model.backbone).target_layer
    x = prepare(cfg, show_progress=False).images("test", show_progress=False)[: args.images]
    params = SegmentParams.from_config(cfg.segment)

    parts = {"cam": [], "segment": []}

    def pipeline(batch):
        t0 = time.perf_counter()
        probs, cams = predict_and_explain(model, batch, target, method=cfg.segment.cam, batch_size=len(batch))
        t1 = time.perf_counter()
        for img, cam, p in zip(batch, cams, probs):
            segment(img, cam, CLASSES[int(np.argmax(p))], params)
        parts["cam"].append((t1 - t0) / len(batch))
        parts["segment"].append((time.perf_counter() - t1) / len(batch))

    pipeline(x[:1])  # warm-up: builds the gradient function
    pipeline(x[: args.batch])
    single = []
    parts["cam"].clear()
    parts["segment"].clear()
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
        "variant": model.name,
        "image_size": cfg.data.image_size,
        "n_images": len(x),
        "single_ms": {
            "median": 1000 * float(np.median(single)),
            "p90": 1000 * float(np.quantile(single, 0.9)),
            "predict_and_gradcam_median": breakdown["cam"],
            "head_mask_and_grabcut_median": breakdown["segment"],
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
        f"one image: median {res['single_ms']['median']:.0f} ms (p90 {res['single_ms']['p90']:.0f} ms; "
        f"predict + Grad-CAM {breakdown['cam']:.0f} ms, head mask + GrabCut {breakdown['segment']:.0f} ms); "
        f"batched x{args.batch}: {res['batched']['images_per_second']:.1f} images/s; wrote {path}"
    )


if __name__ == "__main__":
    main()
