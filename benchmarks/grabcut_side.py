"""Benchmark (not a test): what does GrabCut's working resolution cost and buy?

    python benchmarks/grabcut_side.py [--profile cpu] [--sides 112 80 64] [--out DIR]

GrabCut dominates the explain step's time (py-spy: 93% of the map tuning in ``cv2.grabCut``), and its
cost grows faster than its pixels. ``SegmentParams.max_side`` bounds the side of the region GrabCut
decides (the lesion's bounding box plus a margin, downscaled). For each side, on the **published**
single model (no training): the configured CAM and the weak-mask network's map are tuned on the expert
masks' tuning half exactly as the explain step tunes them (`tumorlens.explain.scoring.tune_params`),
then scored on the report half: mean Dice + GrabCut with bootstrap 95% intervals, the paired difference
from the largest side, the tuning time and the time per GrabCut call. Writes
``grabcut_side_<profile>.json``. Needs the expert masks and the published models; nothing here is
chosen on the report half.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    from _published_masks import published_expert_set

    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.scoring import explain_items, network_items, score_items, tune_params
    from tumorlens.explain.weak_masks import grabcut_mask, head_mask
    from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--sides", type=int, nargs="+", default=[112, 80, 64])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    ps = published_expert_set(args.profile, network=False)
    mf, cfg, model, source, items, data, base = ps.mf, ps.cfg, ps.model, ps.source, ps.items, ps.data, ps.base
    backbone, size, s = cfg.model.backbone, cfg.data.image_size, cfg.segment
    tune_part, report_part = ps.tune, ps.report
    cam_setting = CamSetting.from_config(s)
    maps = {
        cam_setting.name: explain_items(model, backbone, items, size, cam=cam_setting, data=data, show_progress=False)
    }
    if ps.segmenter is not None:
        maps["network"] = network_items(ps.segmenter, data, flip=s.network_flip)
    out = {}
    for name, ic in maps.items():
        rows_by, res = {}, {}
        pos = {it.id: i for i, it in enumerate(ic.items)}
        probe = [pos[it.id] for it in tune_part[:40]]
        for side in args.sides:
            b = replace(base, max_side=side)
            t0 = time.perf_counter()
            params, grid = tune_params(ic, tune_part, b)
            tune_s = time.perf_counter() - t0
            rows = rows_by[side] = score_items(ic, report_part, params, tolerance=s.pointing_tolerance, oracle=False)
            t1 = time.perf_counter()
            for i in probe:  # the time of one GrabCut call at the chosen levels (head mask outside the clock)
                img = ic.images[i]
                grabcut_mask(img, ic.cams_true[i], head_mask(img), params)
            per_call = (time.perf_counter() - t1) / len(probe)
            ref = rows_by[args.sides[0]]
            res[str(side)] = {
                "tune_dice_grabcut": max(
                    g["mean_dice"] for g in grid if g["step"] == "grabcut" and g["mean_dice"] is not None
                ),
                "report_dice_grabcut": bootstrap_mean([r["dice_grabcut"] for r in rows], seed=cfg.seed),
                "report_minus_largest": paired_mean_diff(
                    [r["dice_grabcut"] for r in rows], [r["dice_grabcut"] for r in ref], seed=cfg.seed
                ),
                "params": params.__dict__,
                "tune_seconds": round(tune_s, 1),
                "ms_per_call": round(1000 * per_call, 1),
            }
            r = res[str(side)]
            print(
                f"{name:18s} side {side:3d}: tuning Dice {r['tune_dice_grabcut']:.3f} | report "
                f"{r['report_dice_grabcut']['value']:.3f} (vs {args.sides[0]}: "
                f"{r['report_minus_largest']['diff']:+.3f}) | tuning {tune_s:.0f} s, {r['ms_per_call']:.0f} ms a call",
                flush=True,
            )
        out[name] = res
    result = {
        "profile": args.profile,
        "model": f"published:{mf['single']}",
        "source": source,
        "n_tune": len(tune_part),
        "n_report": len(report_part),
        "sides": args.sides,
        "maps": out,
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"grabcut_side_{args.profile}.json", result)
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
