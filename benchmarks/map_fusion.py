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
    from _published_masks import published_expert_set, tune_and_score

    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.scoring import explain_items, network_items
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    p = published_expert_set(args.profile)
    s = p.cfg.segment
    net = network_items(p.segmenter, p.data, flip=s.network_flip)
    cam_setting = CamSetting.from_config(s)
    cam = explain_items(
        p.model, p.cfg.model.backbone, p.items, p.cfg.data.image_size, cam=cam_setting, data=p.data, show_progress=False
    )
    candidates = {
        name: (fuse(net.cams, _norm(cam.cams)), fuse(net.cams_true, _norm(cam.cams_true)))
        for name, fuse in FUSIONS.items()
    }
    out, best = tune_and_score(p, net, candidates, width=10)
    result = {
        "profile": args.profile,
        "model": f"published:{p.mf['single']}",
        "cam": cam_setting.name,
        "source": p.source,
        "n_tune": len(p.tune),
        "n_report": len(p.report),
        "fusions": out,
        "best_on_tuning": {"fusion": best[0], "mask": best[1], "tune_dice": out[best[0]]["tune_dice"][best[1]]},
        "environment": environment(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = write_json(Path(args.out) / f"map_fusion_{args.profile}.json", result)
    print(f"best on the tuning half: {best[0]} ({best[1]}); written to {dest}")


if __name__ == "__main__":
    main()
