"""Benchmark (not a test): does mirror test-time augmentation help the classifier hold outside Kaggle?

    python benchmarks/flip_tta.py [--profile cpu] [--out DIR]

A probe for the external-validity issue, on the **published** models (no training): the single model and
the soft-voting ensemble, each as published and with its class probabilities averaged with those of the
left-right mirrored image (an a-priori choice: brain MRI slices are close to mirror-symmetric and the
tumour's side carries no class information). Scored on the validation split (where a choice would be
made), the official Testing split, its de-duplicated subset and the external folders
(``external.folders``; never chosen on): accuracy, macro-F1 and no-tumour recall, with bootstrap 95%
intervals and the paired difference of mirrored minus plain. Writes ``flip_tta_<profile>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from tumorlens.config import CLASSES, load_config
    from tumorlens.data.prepared import prepare
    from tumorlens.evaluation.ensembles import soft_vote
    from tumorlens.evaluation.external import load_external
    from tumorlens.experiments import published
    from tumorlens.experiments.external import external_folders
    from tumorlens.metrics.stats import bootstrap_ci, paired_bootstrap_diff
    from tumorlens.models.inference import predict_images
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    mf = published.read_manifest(args.profile)
    folders = external_folders(load_config(args.profile))
    if not folders:
        raise SystemExit("no external folders (external.folders, or ../shared/data/brisc2025-cls-dev): nothing to hold")
    nt = CLASSES.index("notumor")
    sets: dict[str, dict] = {}  # set name -> {"y", "plain": [member probs], "mirrored": [...]}
    t0 = time.perf_counter()
    for name in mf["ensemble"]:
        cfg = published.recipe_config(name, args.profile)
        size = cfg.data.image_size
        prep = prepare(cfg, show_progress=False)
        model = published.load(name, args.profile)
        parts = {s: (prep.images(s, show_progress=False), prep.labels(s)) for s in ("val", "test")}
        for k, folder in enumerate(folders):
            ext = load_external(folder, size, show_progress=False)
            parts[f"external{k or ''}"] = (ext.images, ext.y)
        for s, (x, y) in parts.items():
            entry = sets.setdefault(s, {"y": np.asarray(y), "plain": [], "mirrored": []})
            plain = predict_images(model, x)
            entry["plain"].append(plain)
            entry["mirrored"].append((plain + predict_images(model, x[:, :, ::-1])) / 2)
        dedup = prep.dedup_mask()
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    sets["dedup"] = {k: [p[dedup] for p in v] if k != "y" else v[dedup] for k, v in sets["test"].items()}

    def score(y, probs, seed=0):
        pred = probs.argmax(1)
        out = {m: bootstrap_ci(y, pred, m, seed=seed) for m in ("accuracy", "macro_f1")}
        out["notumor_recall"] = float((pred[y == nt] == nt).mean()) if (y == nt).any() else None
        return out

    results = {}
    for s, entry in sets.items():
        y = entry["y"]
        for system, pick in (("single", lambda ps: ps[0]), ("soft voting", soft_vote)):
            plain, mirrored = pick(entry["plain"]), pick(entry["mirrored"])
            results.setdefault(s, {})[system] = {
                "n": int(len(y)),
                "plain": score(y, plain),
                "mirrored": score(y, mirrored),
                "mirrored_minus_plain": {
                    m: paired_bootstrap_diff(y, mirrored.argmax(1), plain.argmax(1), m)
                    for m in ("accuracy", "macro_f1")
                },
            }
            r = results[s][system]
            print(
                f"{s:10s} {system:12s} accuracy {r['plain']['accuracy']['value']:.4f} -> "
                f"{r['mirrored']['accuracy']['value']:.4f}  no-tumour recall {r['plain']['notumor_recall']} -> "
                f"{r['mirrored']['notumor_recall']}"
            )
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    out = write_json(
        dest / f"flip_tta_{args.profile}.json",
        {
            "profile": args.profile,
            "single": mf["single"],
            "ensemble": mf["ensemble"],
            "external": [Path(f).name for f in folders],
            "sets": results,
            "seconds": round(time.perf_counter() - t0, 1),
            "environment": environment(),
        },
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
