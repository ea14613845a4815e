"""Benchmark (not a test): the explain step's cost by stage, and what a cheaper setting does to its Dice.

    python benchmarks/explain_cost.py --out runs/bench/explain-r1 --set segment.network_rounds=1
    python benchmarks/network_rounds.py --rounds-from HEAD --current runs/bench/explain-r1

Runs the explain step's scoring (`tumorlens.explain.scoring.evaluate_segmentation`: every compared map, the
tuning on the expert masks' tuning half, the weak-mask network, the galleries) on the **published** single
model (models/<profile>; no retraining), with the profile's settings and the ``--set`` overrides, into
``--out`` -- an explain step's folder, which `network_rounds.py --current` reads. The localisation ablation
(other classifiers, unpublished) is not part of it. Writes ``explain_cost_<profile>_<tag>.json``: the
overrides, the stage seconds (summary.json's and network.json's), the wall time, and the adopted mask's
report-half Dice beside the published explain step's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main() -> None:
    from tumorlens.experiments import published
    from tumorlens.explain.scoring import evaluate_segmentation
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", required=True, help="the explain step's folder to write (e.g. runs/bench/explain-r1)")
    ap.add_argument("--set", action="append", default=[], help="a settings override KEY=VALUE (JSON value)")
    ap.add_argument("--tag", default=None, help="names the result file (default: the overrides)")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs KEY=VALUE; received {item!r}")
        overrides[key] = _value(value)
    mf = published.read_manifest(args.profile)
    cfg = published.recipe_config(profile=args.profile, overrides=overrides)
    model = published.load(profile=args.profile)
    t0 = time.perf_counter()
    summary = evaluate_segmentation(cfg, REPO / "runs" / args.profile / mf["single"], out_dir=args.out, model=model)
    wall = time.perf_counter() - t0
    net = json.loads((Path(args.out) / "network.json").read_text()) if cfg.segment.network else {}
    ref = json.loads((REPO / "results" / args.profile / "segmentation" / "summary.json").read_text())

    def adopted(s: dict) -> dict:
        row = next(r for r in s["methods"] if r["map"] == s["map"] and r["mask"] == s["mask"])
        return {
            "map": s["map"],
            "mask": s["mask"],
            "dice": row["dice_mean"],
            "dice_ci": [row["dice_lo"], row["dice_hi"]],
            "tune_dice": row["tune_dice"],
            "pointing": row["pointing"],
            **{k: row.get(k) for k in ("dice_glioma", "dice_meningioma", "dice_pituitary")},
        }

    tag = args.tag or ("_".join(f"{k.split('.')[-1]}-{v}" for k, v in overrides.items()) or "default")
    result = {
        "profile": args.profile,
        "model": mf["single"],
        "overrides": overrides,
        "out": Path(args.out).resolve().relative_to(REPO).as_posix(),
        "wall_seconds": round(wall, 1),
        "stage_seconds": summary["seconds"],
        "network_seconds": net.get("seconds"),
        "adopted": adopted(summary),
        "published_adopted": adopted(ref),
        "note": "the published explain step's wall time (results/cpu/reproduction.json) includes the "
        "localisation ablation, which this benchmark leaves out",
        "environment": environment(),
    }
    Path(args.results).mkdir(parents=True, exist_ok=True)
    path = write_json(Path(args.results) / f"explain_cost_{args.profile}_{tag}.json", result)
    a, b = result["adopted"], result["published_adopted"]
    print(
        f"{wall:.0f} s; adopted {a['map']} {a['mask']} report Dice {a['dice']:.3f} (published {b['map']} "
        f"{b['mask']} {b['dice']:.3f}); stages {summary['seconds']}; written to {path}"
    )


if __name__ == "__main__":
    main()
