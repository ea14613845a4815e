"""Benchmark (not a test): which images should an ensemble's members of different input sides read?

    python benchmarks/ensemble_input.py [--profile cpu] [--out DIR]

The published ensemble mixes EfficientNet-Lite1 (240 px) with Lite0 members (224 px). Two input
policies, on the **published** models (no training), scored on the validation split (where the choice is
made) and on the official Testing split (reported): ``direct`` -- every member reads the image
letterboxed to its own side (what the published ensemble metric computed, and what ``tumorlens predict
--ensemble published`` does since this benchmark) -- and ``resized`` -- the image letterboxed to the
single model's side once, then resized again to each member's (what predict did before). Writes
``ensemble_input_<profile>.json`` with accuracy and macro-F1 per policy and split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    from tumorlens.config import load_config
    from tumorlens.data.pipeline import load_images
    from tumorlens.data.prepared import prepare
    from tumorlens.evaluation.ensembles import soft_vote
    from tumorlens.experiments import published
    from tumorlens.metrics.stats import accuracy, macro_f1
    from tumorlens.models.inference import predict_images
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    mf = published.read_manifest(args.profile)
    models = {n: published.load(n, args.profile) for n in mf["ensemble"]}
    single_side = int(mf["models"][mf["single"]]["recipe"]["image_size"])
    sides = sorted({int(m.inputs[0].shape[1]) for m in models.values()} | {single_side})
    prep = prepare(load_config(args.profile), show_progress=False)
    result = {"profile": args.profile, "ensemble": mf["ensemble"], "single_side": single_side, "splits": {}}
    for split in ("val", "test"):
        y = prep.labels(split)
        x = {s: load_images(prep.splits[split], s, show_progress=False) for s in sides}
        policies = {
            "direct": soft_vote([predict_images(m, x[int(m.inputs[0].shape[1])]) for m in models.values()]),
            "resized": soft_vote([predict_images(m, x[single_side]) for m in models.values()]),
        }
        result["splits"][split] = {
            "n": int(len(y)),
            **{
                k: {"accuracy": accuracy(y, p.argmax(1)), "macro_f1": macro_f1(y, p.argmax(1))}
                for k, p in policies.items()
            },
        }
    val = result["splits"]["val"]
    result["chosen_on_validation"] = max(("direct", "resized"), key=lambda k: (val[k]["accuracy"], k == "direct"))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["environment"] = environment()
    out = Path(args.out) / f"ensemble_input_{args.profile}.json"
    write_json(out, result)
    print(out, {s: {k: v for k, v in r.items() if k != "n"} for s, r in result["splits"].items()})


if __name__ == "__main__":
    main()
