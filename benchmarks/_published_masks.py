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
