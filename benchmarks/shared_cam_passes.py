"""Benchmark (not a test): the explain step's map comparison from shared passes (`explain_items_many`:
one forward/backward pass per batch for every map setting, the true class's map again only where the
prediction is wrong) against one setting at a time (`explain_items` per setting, as before).

    python benchmarks/shared_cam_passes.py [--profile cpu] [--n 96] [--out DIR]

Measured on the published single model and the first ``--n`` BRISC expert-mask images (``segment.masks``;
a subset, so it fits a session beside other work); the settings are the explain step's (the paper's
Grad-CAM, ``segment.compare`` and the configured map). Writes ``shared_cam_passes_<profile>.json``:
seconds each way, the speed-up, and per setting the largest difference between the two ways' maps
(predicted and true class, after upsampling and normalising).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from tumorlens import paths
    from tumorlens.config import CLASSES
    from tumorlens.experiments import published
    from tumorlens.experiments.predict import Predictor
    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.ground_truth import mask_items_for
    from tumorlens.explain.scoring import PAPER_MAP, explain_items, explain_items_many, load_mask_set
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--n", type=int, default=96, help="expert-mask images measured (the first n)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    mf = published.read_manifest(args.profile)
    cfg = published.recipe_config(profile=args.profile)
    pred = Predictor.published(profile=args.profile)
    s = cfg.segment
    source, items = mask_items_for(cfg)
    if not items:
        raise SystemExit("no expert masks found: set segment.masks or TUMORLENS_MASKS (see data/README.md)")
    items = items[: args.n]
    size, backbone = cfg.data.image_size, cfg.model.backbone
    data = load_mask_set(items, size)
    settings = list(
        {c.name: c for c in [PAPER_MAP, *map(CamSetting.parse, s.compare), CamSetting.from_config(s)]}.values()
    )
    explain_items_many(
        pred.model, backbone, items, size, settings[:1], data=data, show_progress=False
    )  # warm-up: tracing
    t0 = time.perf_counter()
    many = explain_items_many(pred.model, backbone, items, size, settings, data=data, show_progress=False)
    shared_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = {
        cs.name: explain_items(pred.model, backbone, items, size, cam=cs, data=data, show_progress=False)
        for cs in settings
    }
    alone_s = time.perf_counter() - t0
    diffs = {
        name: {
            "predicted": float(np.abs(many[name].cams - ic.cams).max()),
            "true": float(np.abs(many[name].cams_true - ic.cams_true).max()),
        }
        for name, ic in alone.items()
    }
    truth = np.array([CLASSES.index(it.cls) for it in items])
    wrong = int((many[settings[0].name].probs.argmax(1) != truth).sum())
    result = {
        "profile": args.profile,
        "model": mf["single"],
        "source": source,
        "n_images": len(items),
        "n_misclassified": wrong,
        "settings": [cs.name for cs in settings],
        "shared_seconds": round(shared_s, 2),
        "one_at_a_time_seconds": round(alone_s, 2),
        "speedup": round(alone_s / shared_s, 2),
        "max_abs_difference": diffs,
        "environment": environment(),
    }
    print(
        f"{len(settings)} settings on {len(items)} images: shared {shared_s:.1f} s, one at a time {alone_s:.1f} s "
        f"(x{alone_s / shared_s:.1f}); largest map difference "
        f"{max(max(d.values()) for d in diffs.values()):.2e}"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"shared_cam_passes_{args.profile}.json", result)
    print(f"written to {paths.relative(dest)}")


if __name__ == "__main__":
    main()
