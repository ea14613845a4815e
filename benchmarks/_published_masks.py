"""What the probes on the published models share (not a benchmark): the published single model, its
weak-mask network and the expert masks split into the tuning and report halves as the explain step splits
them (`tumorlens.explain.ground_truth.split_items`)."""

from __future__ import annotations

from types import SimpleNamespace


def published_expert_set(profile: str, *, network: bool = True) -> SimpleNamespace:
    """``mf, cfg, model, segmenter, source, items, data, tune, report, base`` for ``profile``; exits with a
    message when the expert masks (or, with ``network``, the published weak-mask network) are missing."""
    from tumorlens.experiments import published
    from tumorlens.explain.ground_truth import mask_items_for, split_items
    from tumorlens.explain.scoring import load_mask_set
    from tumorlens.explain.weak_masks import SegmentParams

    mf = published.read_manifest(profile)
    cfg = published.recipe_config(profile=profile)
    model = published.load(profile=profile)
    segmenter = published.load_segmenter(model, profile)
    if network and segmenter is None:
        raise SystemExit(f"the published {profile} segmentation adopts no weak-mask network")
    source, items = mask_items_for(cfg)
    if not items:
        raise SystemExit("no expert masks found: set segment.masks or TUMORLENS_MASKS (see data/README.md)")
    tune, report = split_items(items, cfg.segment.tune_fraction, cfg.data.seed)
    return SimpleNamespace(
        mf=mf,
        cfg=cfg,
        model=model,
        segmenter=segmenter,
        source=source,
        items=items,
        data=load_mask_set(items, cfg.data.image_size),
        tune=tune,
        report=report,
        base=SegmentParams.from_config(cfg.segment),
    )


def tune_and_score(p: SimpleNamespace, net, candidates: dict, *, baseline: str = "network", width: int = 26):
    """Each candidate map tuned on ``p.tune`` as the explain step tunes its rows
    (`tumorlens.explain.scoring.tune_params`) and scored on ``p.report``; ``candidates`` maps a name to
    ``(cams, cams_true)`` (N, S, S) in [0, 1], ``net`` is the network's `ItemCams` the maps replace.
    Returns ``(out, best)``: per name the tuning Dice per mask kind, the report Dice with bootstrap 95%
    intervals, the paired difference from ``baseline`` (a name of ``candidates``, scored first), per-class
    Dice + GrabCut, the pointing game, the chosen params and seconds; ``best`` the (name, kind) with the
    highest tuning Dice. Prints a line per candidate."""
    import time
    from dataclasses import replace

    import numpy as np

    from tumorlens.explain.scoring import KINDS, score_items, tune_params
    from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff

    seed, tolerance = p.cfg.seed, p.cfg.segment.pointing_tolerance
    names = [baseline] + [n for n in candidates if n != baseline]
    rows_by, out = {}, {}
    for name in names:
        cams, cams_true = candidates[name]
        t0 = time.perf_counter()
        ic = replace(net, cams=cams.astype(np.float32), cams_true=cams_true.astype(np.float32), name=name)
        params, grid = tune_params(ic, p.tune, p.base)
        tune = {k: max(g["mean_dice"] for g in grid if g["step"] == k and g["mean_dice"] is not None) for k in KINDS}
        rows = rows_by[name] = score_items(ic, p.report, params, tolerance=tolerance)
        out[name] = {
            "tune_dice": tune,
            "report_dice": {k: bootstrap_mean([r[f"dice_{k}"] for r in rows], seed=seed) for k in KINDS},
            f"report_minus_{baseline}": {
                k: paired_mean_diff(
                    [r[f"dice_{k}"] for r in rows], [r[f"dice_{k}"] for r in rows_by[baseline]], seed=seed
                )
                for k in KINDS
            },
            "per_class_grabcut_dice": {
                c: float(np.mean([r["dice_grabcut"] for r in rows if r["class"] == c]))
                for c in sorted({r["class"] for r in rows})
            },
            "pointing": bootstrap_mean([float(r["pointing"]) for r in rows], seed=seed),
            "params": params.__dict__,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rep, d = out[name]["report_dice"], out[name][f"report_minus_{baseline}"]["grabcut"]
        print(
            f"{name:{width}s} tuning map {tune['cam']:.3f} +GrabCut {tune['grabcut']:.3f} | report map "
            f"{rep['cam']['value']:.3f} +GrabCut {rep['grabcut']['value']:.3f} ({d['diff']:+.3f} "
            f"[{d['lo']:+.3f}, {d['hi']:+.3f}] vs {baseline}) | pointing {out[name]['pointing']['value']:.3f}"
        )
    best = max(((n, k) for n in out for k in KINDS), key=lambda nk: out[nk[0]]["tune_dice"][nk[1]])
    return {n: out[n] for n in candidates}, best
