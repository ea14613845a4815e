"""Benchmark (not a test): maps from several depths and input scales, fused (AME-CAM / UM-CAM style).

    python benchmarks/multi_depth_cam.py [--profile cpu] [--scales 1 2] [--out DIR]

The weak-mask issue's item 2 (fusion of maps from several depths and input scales, the input upscaled x2
for small pituitary tumours; maps weighted by their certainty), probed on the **published** single model
and its weak-mask network (no training). LayerCAM of the predicted class (and of the true class, for
tuning) at the stride-32, -16 and -8 layers, from the letterboxed image and from the same image upscaled
x2 (its maps resized back), each normalised to [0, 1] per image. Fusions:

* ``configured`` -- the published pipeline's CAM setting (``segment.cam`` / ``cam_layers``), the baseline CAM;
* ``depths`` -- the mean of the three depths at scale 1 (AME-CAM's multi-exit fusion, without its training);
* ``depths+scales`` -- the mean of every depth at every scale;
* ``certainty`` -- the same maps weighted per image by their certainty, 1 / (mean binary entropy) of the
  map (UM-CAM's uncertainty weighting of multi-resolution maps);
* ``network`` -- the published weak-mask network's map (the adopted default), and each fusion above
  combined with it by the geometric mean (the best CAM fusion of ``map_fusion.py``).

Each map is tuned on the expert masks' tuning half exactly as the explain step tunes its rows
(`tumorlens.explain.scoring.tune_params`), then scored on the report half: mean Dice (map alone and
+ GrabCut) with bootstrap 95% intervals, the paired difference from the network, per-class Dice and the
pointing game. Nothing is chosen on the report half. Writes ``multi_depth_cam_<profile>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEPTHS = ("top", "stride16", "stride8")


def _norm(m: np.ndarray) -> np.ndarray:
    m = m - m.min(axis=(1, 2), keepdims=True)
    return m / np.maximum(m.max(axis=(1, 2), keepdims=True), 1e-8)


def certainty_weights(maps: list[np.ndarray]) -> np.ndarray:
    """``(K, N)`` weights summing to 1 over the ``K`` maps of each image: 1 / the map's mean binary entropy
    (a map near 0 or 1 everywhere is certain; one near 0.5 is not)."""
    eps = 1e-6
    h = []
    for m in maps:
        p = np.clip(m, eps, 1 - eps)
        h.append((-(p * np.log(p) + (1 - p) * np.log(1 - p))).mean(axis=(1, 2)))
    w = 1.0 / np.maximum(np.stack(h), eps)
    return w / w.sum(axis=0, keepdims=True)


def weighted(maps: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return _norm(sum(wk[:, None, None] * m for wk, m in zip(w, maps)))


def main() -> None:
    import cv2
    from _published_masks import published_expert_set, tune_and_score

    from tumorlens.config import CLASSES
    from tumorlens.explain.cam import CamSetting, cam_maps_many, upsample_normalise
    from tumorlens.explain.scoring import explain_items_many, network_items
    from tumorlens.models.classifier import build_classifier
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--scales", nargs="+", type=int, default=[1, 2], help="input scales (1: the model's side)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    p = published_expert_set(args.profile)
    cfg, s = p.cfg, p.cfg.segment
    backbone, size = cfg.model.backbone, cfg.data.image_size
    configured = CamSetting.from_config(s)
    settings = [CamSetting("layercam", d) for d in DEPTHS]
    t0 = time.perf_counter()
    many = explain_items_many(
        p.model, backbone, p.items, size, [configured, *settings], data=p.data, show_progress=False
    )
    first = many[configured.name]
    pred_idx = first.probs.argmax(1)
    true_idx = np.array([CLASSES.index(it.cls) for it in first.items], int)
    maps = {(d, 1): (many[cs.name].cams, many[cs.name].cams_true) for d, cs in zip(DEPTHS, settings)}
    seconds = {"scale 1": time.perf_counter() - t0}
    for k in args.scales:
        if k == 1:
            continue
        t0 = time.perf_counter()
        # the same weights at k times the side (the network is convolutional up to its global pooling)
        r = p.mf["models"][p.mf["single"]]["recipe"]
        big_model = build_classifier(
            r["backbone"],
            r["modules"],
            image_size=size * k,
            weights=r["base"],
            dropout=r["dropout"],
            vit=r.get("vit"),
            pooling=r.get("pooling", "gap"),
        )
        big_model.set_weights(p.model.get_weights())
        big = np.stack([cv2.resize(im, (size * k, size * k), interpolation=cv2.INTER_CUBIC) for im in p.data.images])
        # maps of the class called at scale 1 (and the true class), so every fused map is of one class
        pred_maps, true_maps = {cs.name: [] for cs in settings}, {cs.name: [] for cs in settings}
        for b in range(0, len(big), 8):
            mp, _ = cam_maps_many(big_model, big[b : b + 8], settings, backbone, pred_idx[b : b + 8], batch_size=8)
            mt, _ = cam_maps_many(big_model, big[b : b + 8], settings, backbone, true_idx[b : b + 8], batch_size=8)
            for cs in settings:
                pred_maps[cs.name].append(mp[cs.name])
                true_maps[cs.name].append(mt[cs.name])
        for d, cs in zip(DEPTHS, settings):
            maps[(d, k)] = tuple(
                upsample_normalise(np.concatenate(m[cs.name]), (size, size)) for m in (pred_maps, true_maps)
            )
        seconds[f"scale {k}"] = time.perf_counter() - t0
    net = network_items(p.segmenter, p.data, flip=s.network_flip)
    scale1 = [maps[(d, 1)] for d in DEPTHS]
    every = list(maps.values())
    candidates = {
        "network": (net.cams, net.cams_true),
        "configured": (_norm(first.cams), _norm(first.cams_true)),
        "depths": tuple(_norm(np.mean([m[j] for m in scale1], axis=0)) for j in (0, 1)),
        "depths+scales": tuple(_norm(np.mean([m[j] for m in every], axis=0)) for j in (0, 1)),
        "certainty": tuple(weighted([m[j] for m in every], certainty_weights([m[j] for m in every])) for j in (0, 1)),
    }
    for name in ("configured", "depths", "depths+scales", "certainty"):
        c = candidates[name]
        candidates[f"network x {name}"] = (np.sqrt(net.cams * c[0]), np.sqrt(net.cams_true * c[1]))
    out, best = tune_and_score(p, net, candidates)
    result = {
        "profile": args.profile,
        "model": f"published:{p.mf['single']}",
        "configured_cam": configured.name,
        "depths": list(DEPTHS),
        "scales": args.scales,
        "source": p.source,
        "n_tune": len(p.tune),
        "n_report": len(p.report),
        "map_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "fusions": out,
        "best_on_tuning": {"fusion": best[0], "mask": best[1], "tune_dice": out[best[0]]["tune_dice"][best[1]]},
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"multi_depth_cam_{args.profile}.json", result)
    print(f"best on the tuning half: {best[0]} ({best[1]}); written to {dest}")


if __name__ == "__main__":
    main()
