"""Benchmark (not a test): does a left-right asymmetry cue sharpen the weak masks?

    python benchmarks/asymmetry_cue.py [--profile cpu] [--out DIR]

Tumours are one-sided; healthy anatomy on axial and coronal slices is nearly mirror-symmetric about the
head's midline. A probe for the weak-mask issue, on the **published** single model and its weak-mask
network (no training): the image's asymmetry -- the absolute difference between the slice and its mirror
about the head's vertical midline, inside the head, smoothed and scaled to [0, 1] per image -- is fused
with the network's tumour probability (product with the square root, and mean) on axial and coronal slices
(sagittal slices keep the network's map: there is no symmetry to use). Each map is tuned on the expert
masks' tuning half exactly as the explain step tunes its rows (`tumorlens.explain.scoring.tune_params`) and
scored on the report half: mean Dice (map alone and + GrabCut) with bootstrap 95% intervals, per view, the
paired difference from the network alone, and the pointing game. Writes ``asymmetry_cue_<profile>.json``.
Needs the expert masks and the published models; nothing here is chosen on the report half.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np


def asymmetry(image: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """``image`` uint8 ``(S, S, 3)`` -> float32 ``(S, S)`` in [0, 1]: |slice - mirror| about the head's
    midline (the column centroid of the head mask), inside the head and its mirror, blurred, / its 99th
    percentile; zeros for an image without a head."""
    from tumorlens.data.lesion import head_mask

    gray = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    head = head_mask(image)
    if not head.any():
        return np.zeros(gray.shape, np.float32)
    c = float(np.nonzero(head)[1].mean())
    flip = np.float32([[-1, 0, 2 * c], [0, 1, 0]])
    w, h = gray.shape[1], gray.shape[0]
    mirror = cv2.warpAffine(gray, flip, (w, h), flags=cv2.INTER_LINEAR)
    both = head & cv2.warpAffine(head.astype(np.uint8), flip, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    d = cv2.GaussianBlur(np.abs(gray - mirror) * both, (0, 0), sigma)
    top = float(np.percentile(d[both], 99)) if both.any() else 0.0
    return np.clip(d / top, 0, 1).astype(np.float32) if top > 0 else np.zeros(gray.shape, np.float32)


#: fusion name -> (network map, asymmetry) -> map
FUSIONS = {
    "network": lambda net, asym: net,
    "product": lambda net, asym: net * np.sqrt(asym),
    "mean": lambda net, asym: (net + asym) / 2,
}


def main() -> None:
    from _published_masks import published_expert_set

    from tumorlens.explain.scoring import KINDS, network_items, score_items, tune_params
    from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    ps = published_expert_set(args.profile)
    mf, cfg, source, s, base = ps.mf, ps.cfg, ps.source, ps.cfg.segment, ps.base
    tune_part, report_part = ps.tune, ps.report
    net = network_items(ps.segmenter, ps.data, flip=s.network_flip)
    t0 = time.perf_counter()
    symmetric = np.array([it.view in ("ax", "co") for it in net.items])
    asym = np.stack(
        [asymmetry(img) if sym else np.ones(img.shape[:2], np.float32) for img, sym in zip(net.images, symmetric)]
    )
    asym_seconds = time.perf_counter() - t0
    rows_by, out = {}, {}
    for name, fuse in FUSIONS.items():
        t1 = time.perf_counter()
        ic = replace(
            net,
            cams=np.where(symmetric[:, None, None], fuse(net.cams, asym), net.cams).astype(np.float32),
            cams_true=np.where(symmetric[:, None, None], fuse(net.cams_true, asym), net.cams_true).astype(np.float32),
            name=name,
        )
        params, grid = tune_params(ic, tune_part, base)
        tune = {k: max(g["mean_dice"] for g in grid if g["step"] == k and g["mean_dice"] is not None) for k in KINDS}
        rows = rows_by[name] = score_items(ic, report_part, params, tolerance=s.pointing_tolerance)
        ref = rows_by["network"]
        out[name] = {
            "tune_dice": tune,
            "report_dice": {k: bootstrap_mean([r[f"dice_{k}"] for r in rows], seed=cfg.seed) for k in KINDS},
            "report_minus_network": {
                k: paired_mean_diff([r[f"dice_{k}"] for r in rows], [r[f"dice_{k}"] for r in ref], seed=cfg.seed)
                for k in KINDS
            },
            "per_view_dice_cam": {
                v: float(np.mean([r["dice_cam"] for r in rows if r["view"] == v])) for v in ("ax", "co", "sa")
            },
            "pointing": bootstrap_mean([float(r["pointing"]) for r in rows], seed=cfg.seed),
            "params": params.__dict__,
            "seconds": round(time.perf_counter() - t1, 1),
        }
        rep = out[name]["report_dice"]
        print(
            f"{name:8s} tuning Dice map {tune['cam']:.3f} +GrabCut {tune['grabcut']:.3f} | report map "
            f"{rep['cam']['value']:.3f} ({out[name]['report_minus_network']['cam']['diff']:+.3f}) +GrabCut "
            f"{rep['grabcut']['value']:.3f} | pointing {out[name]['pointing']['value']:.3f}",
            flush=True,
        )
    best = max(((n, k) for n in out for k in KINDS), key=lambda nk: out[nk[0]]["tune_dice"][nk[1]])
    result = {
        "profile": args.profile,
        "model": f"published:{mf['single']}",
        "source": source,
        "n_tune": len(tune_part),
        "n_report": len(report_part),
        "asymmetry_ms_per_image": round(1000 * asym_seconds / max(1, int(symmetric.sum())), 2),
        "fusions": out,
        "best_on_tuning": {"fusion": best[0], "mask": best[1], "tune_dice": out[best[0]]["tune_dice"][best[1]]},
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"asymmetry_cue_{args.profile}.json", result)
    print(f"best on the tuning half: {best[0]} ({best[1]}); written to {dest}")


if __name__ == "__main__":
    main()
