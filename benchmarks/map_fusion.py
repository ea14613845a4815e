"""Benchmark (not a test): does fusing the weak-mask network's map with the classifier's CAM outline better?

    python benchmarks/map_fusion.py [--profile cpu] [--out DIR]

A probe for the explanations issue, on the **published** single model and its weak-mask network (no
training): the network's tumour probability alone (the published row), and fused with the configured
CAM of the predicted class (normalised to [0, 1] per image) by the mean, the geometric mean and the
product. Each fusion is thresholded and refined by GrabCut with settings tuned on the expert masks'
tuning half exactly as the explain step tunes its rows (`tumorlens.explain.scoring.tune_params`), and
scored on the report half: mean Dice (map alone and + GrabCut) with bootstrap 95% intervals, the paired
difference from the network alone, and the pointing game. Writes ``map_fusion_<profile>.json``.
Needs the expert masks (``segment.masks``) and the published models; nothing here is chosen on the
report half.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def _norm(m: np.ndarray) -> np.ndarray:
    m = m - m.min(axis=(1, 2), keepdims=True)
    return m / np.maximum(m.max(axis=(1, 2), keepdims=True), 1e-8)


#: fusion name -> (network map, CAM in [0, 1]) -> map
FUSIONS = {
    "network": lambda net, cam: net,
    "mean": lambda net, cam: (net + cam) / 2,
    "geometric": lambda net, cam: np.sqrt(net * cam),
    "product": lambda net, cam: net * cam,
}


def main() -> None:
    from tumorlens.experiments import published
    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.ground_truth import mask_items_for, split_items
    from tumorlens.explain.scoring import KINDS, explain_items, load_mask_set, network_items, score_items, tune_params
    from tumorlens.explain.weak_masks import SegmentParams
    from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    mf = published.read_manifest(args.profile)
    cfg = published.recipe_config(profile=args.profile)
    backbone, size = cfg.model.backbone, cfg.data.image_size
    s = cfg.segment
    model = published.load(profile=args.profile)
    segmenter = published.load_segmenter(model, args.profile)
    if segmenter is None:
        raise SystemExit(f"the published {args.profile} segmentation adopts no weak-mask network: nothing to fuse")
    source, items = mask_items_for(cfg)
    if not items:
        raise SystemExit("no expert masks found: set segment.masks or TUMORLENS_MASKS (see data/README.md)")
    data = load_mask_set(items, size)
    tune_part, report_part = split_items(items, s.tune_fraction, cfg.data.seed)
    base = SegmentParams.from_config(s)
    net = network_items(segmenter, data, flip=s.network_flip)
    cam_setting = CamSetting.from_config(s)
    cam = explain_items(model, backbone, items, size, cam=cam_setting, data=data, show_progress=False)
    rows_by, out = {}, {}
    for name, fuse in FUSIONS.items():
        t0 = time.perf_counter()
        ic = replace(
            net,
            cams=fuse(net.cams, _norm(cam.cams)).astype(np.float32),
            cams_true=fuse(net.cams_true, _norm(cam.cams_true)).astype(np.float32),
            name=name,
        )
        params, grid = tune_params(ic, tune_part, base)
        tune = {k: max(g["mean_dice"] for g in grid if g["step"] == k and g["mean_dice"] is not None) for k in KINDS}
        rows = rows_by[name] = score_items(ic, report_part, params, tolerance=s.pointing_tolerance)
        out[name] = {
            "tune_dice": tune,
            "report_dice": {k: bootstrap_mean([r[f"dice_{k}"] for r in rows], seed=cfg.seed) for k in KINDS},
            "report_minus_network": {
                k: paired_mean_diff(
                    [r[f"dice_{k}"] for r in rows], [r[f"dice_{k}"] for r in rows_by["network"]], seed=cfg.seed
                )
                for k in KINDS
            },
            "pointing": bootstrap_mean([float(r["pointing"]) for r in rows], seed=cfg.seed),
            "params": params.__dict__,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rep = out[name]["report_dice"]
        print(
            f"{name:10s} tuning Dice map {tune['cam']:.3f} +GrabCut {tune['grabcut']:.3f} | report map "
            f"{rep['cam']['value']:.3f} +GrabCut {rep['grabcut']['value']:.3f} | "
            f"pointing {out[name]['pointing']['value']:.3f}"
        )
    best = max(((n, k) for n in out for k in KINDS), key=lambda nk: out[nk[0]]["tune_dice"][nk[1]])
    result = {
        "profile": args.profile,
        "model": f"published:{mf['single']}",
        "cam": cam_setting.name,
        "source": source,
        "n_tune": len(tune_part),
        "n_report": len(report_part),
        "fusions": out,
        "best_on_tuning": {"fusion": best[0], "mask": best[1], "tune_dice": out[best[0]]["tune_dice"][best[1]]},
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"map_fusion_{args.profile}.json", result)
    print(f"best on the tuning half: {best[0]} ({best[1]}); written to {dest}")


if __name__ == "__main__":
    main()
