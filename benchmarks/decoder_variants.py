"""Benchmark (not a test): what the weak-mask decoder's training costs, and what cheaper or UM-CAM-style
training does to its masks.

    python benchmarks/decoder_variants.py [--profile cpu] [--variants e10 e5 e10-ignore ...]

On the **published** single model (models/<profile>; nothing retrained): the explain step's first-round
pseudo-masks of the Kaggle training split (the configured map, refined by GrabCut with the published
network's round-1 levels, `tumorlens.explain.refine.pseudo_masks`) and the encoder features, computed once;
then one decoder per variant, each trained as `train_segmenter`'s first round trains it, with:

- ``e<N>``: N epochs (the cpu profile trains 10);
- ``-ignore``: no loss on the pixels where the binarised map and map + GrabCut disagree
  (``segment.network_ignore: disagree``, UM-CAM's unreliable pixels);
- ``-tumour``: the tumour images only (no empty no-tumour targets).

Each decoder's map is tuned on the expert masks' tuning half and scored on the report half as the explain
step scores its network row (`_published_masks.tune_and_score`), the paired difference against the first
variant. Nothing is fitted on the expert masks. Writes ``decoder_variants_<profile>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from _published_masks import published_expert_set, tune_and_score

REPO = Path(__file__).resolve().parents[1]


def parse(name: str) -> dict:
    m = re.fullmatch(r"e(\d+)((?:-ignore|-tumour)*)", name)
    if not m:
        raise SystemExit(f"a variant is e<epochs>[-ignore][-tumour]; received {name!r}")
    return {"epochs": int(m.group(1)), "ignore": "-ignore" in m.group(2), "tumour_only": "-tumour" in m.group(2)}


def main() -> None:
    import numpy as np

    from tumorlens.config import CLASSES
    from tumorlens.data.prepared import prepare
    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.refine import build_segmenter, encoder_features, pseudo_masks, train_decoder
    from tumorlens.explain.scoring import network_items
    from tumorlens.explain.weak_masks import NO_TUMOUR, SegmentParams
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["e10", "e5", "e10-ignore", "e10-tumour"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    variants = {v: parse(v) for v in args.variants}
    p = published_expert_set(args.profile)
    cfg, s = p.cfg, p.cfg.segment
    backbone = cfg.model.backbone
    net_record = json.loads((REPO / "results" / args.profile / "segmentation" / "network.json").read_text())
    params = SegmentParams(**net_record["rounds"][0]["params"])  # the published first round's levels
    cam = CamSetting.from_config(s)
    seconds = {}
    t0 = time.perf_counter()
    prep = prepare(cfg, show_progress=False)
    x, y = prep.images("train", show_progress=False), prep.labels("train")
    seconds["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pm = pseudo_masks(
        p.model, x, y, cam.layer_names(backbone), params, method=cam.method, flip=cam.flip, kind=s.pseudo_masks,
        ignore="disagree", show_progress=False,
    )  # fmt: skip
    seconds["pseudo_masks_with_ignore"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = encoder_features(p.model, backbone, x, show_progress=False)
    seconds["features"] = time.perf_counter() - t0
    tumour = np.flatnonzero(y != CLASSES.index(NO_TUMOUR))
    print(
        f"{len(x)} training images ({len(tumour)} tumour); pseudo-masks {seconds['pseudo_masks_with_ignore']:.0f} s, "
        f"features {seconds['features']:.0f} s; ignored share of a tumour image {pm.ignored_fraction:.4f}"
    )
    maps, trained = {}, {}
    net = None
    for name, v in variants.items():
        idx = tumour if v["tumour_only"] else np.arange(len(x))
        t0 = time.perf_counter()
        decoder, history = train_decoder(
            [f[idx] for f in feats] if v["tumour_only"] else feats,
            pm.masks[idx],
            epochs=v["epochs"],
            width=s.network_width,
            seed=cfg.seed,
            ignore=pm.ignore[idx] if v["ignore"] else None,
            show_progress=False,
        )
        train_s = time.perf_counter() - t0
        ic = network_items(build_segmenter(p.model, backbone, decoder), p.data, flip=s.network_flip)
        net = net or ic
        maps[name] = (ic.cams, ic.cams_true)
        trained[name] = {**v, "n_train": int(len(idx)), "train_seconds": round(train_s, 1), "final_loss": history[-1]}
        print(f"{name}: trained in {train_s:.0f} s on {len(idx)} images (loss {history[-1]['loss']:.4f})")
    scores, best = tune_and_score(p, net, maps, baseline=next(iter(variants)))
    result = {
        "profile": args.profile,
        "model": p.mf["single"],
        "source": p.source,
        "n_tune": len(p.tune),
        "n_report": len(p.report),
        "pseudo_mask_params": params.__dict__,
        "ignored_share_of_tumour_images": pm.ignored_fraction,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "variants": {name: trained[name] | scores[name] for name in variants},
        "best_on_tuning": best,
        "rule": "a variant replaces the default only if its tuning-half Dice is not lower; the report half is "
        "read after the choice",
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"written to {write_json(Path(args.out) / f'decoder_variants_{args.profile}.json', result)}")


if __name__ == "__main__":
    main()
