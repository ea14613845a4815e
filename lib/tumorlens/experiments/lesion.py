"""``tumorlens evaluate lesion``: the lesion-removal test of the published models and of any run.

    tumorlens evaluate lesion --profile cpu                       # the published models on the expert masks
    tumorlens evaluate lesion --profile cpu --model runs/cpu/X/seed-43 --images-out lesion-images/

The expert-masked tumour images (``segment.masks``: BRISC 2025 ``brisc2025-seg-dev``) are read at the
published single model's input size, each lesion (and a same-shaped control region elsewhere in the
head) is removed with every method of `tumorlens.data.lesion.METHODS`
(`tumorlens.evaluation.lesion.make_removal_set`), and each model classifies every version. The record
-- per model, per method: removed -> no tumour, control -> no tumour / class kept, per class and per
view -- goes to ``results/<profile>/lesion.json`` (entries of other models already there are kept), with
a small rendered figure of examples (``lesion_examples.jpg``). The masks are for measuring only:
nothing is trained, chosen or tuned on them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config
from tumorlens.data.lesion import METHODS
from tumorlens.data.prepared import prepare
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.evaluation.lesion import RemovalSet, make_removal_set, predict_versions, removal_scores
from tumorlens.experiments import published
from tumorlens.experiments.collect import MANIFEST, results_dir, write_manifest
from tumorlens.experiments.counterfactual import published_lesion_masks
from tumorlens.explain.gallery import jpeg_bytes
from tumorlens.explain.ground_truth import default_mask_root, load_lesion_masks
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import predict_images
from tumorlens.training.views import estimate_views
from tumorlens.utils.files import atomic_path, read_json, updating, write_json
from tumorlens.utils.progress import progress

__all__ = [
    "LESION_FILE",
    "FIGURE_FILE",
    "VALIDATION_TEST",
    "published_predictors",
    "run_lesion_test",
    "run_validation_lesion_test",
]

LESION_FILE = "lesion.json"
FIGURE_FILE = "lesion_examples.jpg"


def published_predictors(profile: str) -> tuple[dict[str, Callable], dict[str, list[str]], int]:
    """``({name: images -> probabilities}, {ensemble name: member names}, the single model's input side)``
    for the published single model and each other ensemble member, and the soft-voting ensemble of the
    members (every member fed the images resized to its own input side, as `tumorlens predict --ensemble
    published` does)."""
    mf = published.read_manifest(profile)
    names = list(dict.fromkeys([mf["single"], *mf["ensemble"]]))
    models = {n: published.load(n, profile) for n in names}
    preds: dict[str, Callable] = {f"published: {n}": (lambda x, m=m: predict_images(m, x)) for n, m in models.items()}
    ensembles = (
        {f"published soft voting: {' + '.join(mf['ensemble'])}": [f"published: {n}" for n in mf["ensemble"]]}
        if mf["ensemble"]
        else {}
    )
    return preds, ensembles, int(mf["models"][mf["single"]]["recipe"]["image_size"])


def run_predictors(runs: Sequence[str | os.PathLike]) -> tuple[dict[str, Callable], list[int]]:
    """``({<variant>/seed-<n>: images -> probabilities}, their input sides)`` for trained runs (named as the
    results and ``external.json`` name them)."""
    out, sides = {}, []
    for r in runs:
        m = load_model(r)
        out[f"{Path(r).parent.name}/{Path(r).name}"] = lambda x, m=m: predict_images(m, x)
        sides.append(int(m.inputs[0].shape[1]))
    return out, sides


def render_examples(rs: RemovalSet, preds: dict[str, np.ndarray], method: str, per_class: int = 1, tile: int = 150):
    """RGB figure: for ``per_class`` images of each class (the first by id), original | lesion removed |
    control, each titled with the prediction (``preds``: class indices per version), the removed region
    outlined in green and the control's in yellow."""
    rows = []
    short = {"glioma": "glioma", "meningioma": "mening.", "notumor": "no tumour", "pituitary": "pituit."}
    for c in sorted(set(rs.y.tolist())):
        for i in [i for i in range(len(rs.ids)) if rs.y[i] == c and rs.has_control[i]][:per_class]:
            cells = []
            for name, img, region, colour in (
                ("original", rs.original[i], None, None),
                (f"removed:{method}", rs.removed[method][i], rs.regions[i], (60, 220, 60)),
                (f"control:{method}", rs.control[method][i], rs.controls[i], (255, 210, 0)),
            ):
                t = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA).copy()
                if region is not None:
                    small = cv2.resize(region.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
                    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                    cv2.drawContours(t, contours, -1, colour, 1)
                band = np.full((20, tile, 3), 255, np.uint8)
                label = f"{name.split(':')[0]}: {short[CLASSES[int(preds[name][i])]]}"
                cv2.putText(band, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
                cells.append(np.vstack([band, t]))
            rows.append(np.hstack(cells))
    return np.vstack(rows) if rows else np.zeros((1, 1, 3), np.uint8)


def run_lesion_test(
    profile: str = published.PUBLISHED_PROFILE,
    *,
    runs: Sequence[str | os.PathLike] = (),
    include_published: bool = True,
    masks: str | os.PathLike | None = None,
    dilation: float = 0.03,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    images_out: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict:
    """The lesion-removal test (module docstring) of the published models (``include_published``) and
    of ``runs``; writes ``results/<profile>/lesion.json`` (or ``out``; ``out=""``: not written) keeping the
    entries of other models already there, and returns the record. ``images_out``: also write every
    removed and control image (PNG) there, for a look."""
    cfg = load_config(profile)
    root = Path(masks) if masks else default_mask_root(cfg)
    if root is None:
        raise FileNotFoundError(
            "no expert masks: set segment.masks in _config.yml, TUMORLENS_MASKS, or pass --masks DIR "
            "(the BRISC 2025 layout: images/ and masks/)"
        )
    predictors: dict[str, Callable] = {}
    ensembles: dict[str, list[str]] = {}
    size = cfg.data.image_size
    if include_published:
        pub, ensembles, size = published_predictors(profile)
        predictors |= pub
    from_runs, sides = run_predictors(runs)
    predictors |= from_runs
    if not include_published and sides:  # the images at the (first) run's own input side
        size = sides[0]
    if not predictors:
        raise ValueError("nothing to test: give runs or keep the published models")
    ids, images, lesion, y, views = load_lesion_masks(root, size, show_progress=show_progress)
    rs = make_removal_set(
        images, lesion, y, views, ids, dilation=dilation, methods=methods, seed=seed, show_progress=show_progress
    )
    if images_out:
        _write_images(rs, Path(images_out))
    res = results_dir(profile)
    target = Path(out) if out else res / LESION_FILE
    scores: dict[str, dict] = {}
    first_preds = None
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name, fn in progress(list(predictors.items()), desc="models", unit="model", disable=not show_progress):
        probs[name] = predict_versions(rs, fn)
        scores[name] = {**removal_scores(rs, probs[name]), "image_size": size}
        if first_preds is None:
            first_preds = {k: v.argmax(1) for k, v in probs[name].items()}
    for name, members in ensembles.items():  # the members' probabilities, averaged (no second pass)
        voted = {v: soft_vote([probs[m][v] for m in members]) for v, _ in rs.versions()}
        scores[name] = {**removal_scores(rs, voted), "image_size": size}
    record = {
        "profile": profile,
        "set": {"name": root.name, "n": len(ids), "ids": ids, "image_size": size},
        "dilation": dilation,
        "methods": list(methods),
        "seed": seed,
        "models": scores,
    }
    if out != "":
        with updating(target):  # read, merge and write under the lock: a concurrent test keeps its entries
            old = read_json(target, schema="lesion") if target.is_file() else {}
            same_set = old.get("set", {}).get("ids") == ids and old.get("dilation") == dilation
            if same_set and old.get("methods") == list(methods):
                record["models"] = {**old.get("models", {}), **scores}
            if old.get("validation"):  # the validation test's record (`run_validation_lesion_test`) stays
                record["validation"] = old["validation"]
            write_json(target, record, schema="lesion")
        files = [target]
        if target.parent == res and first_preds is not None and include_published:
            fig = render_examples(rs, first_preds, methods[0])
            with atomic_path(res / FIGURE_FILE) as tmp:
                tmp.write_bytes(jpeg_bytes(fig, 80))
            files.append(res / FIGURE_FILE)
            record["figure"] = FIGURE_FILE
        if target.parent == res and (res / MANIFEST).is_file():
            write_manifest(res, profile, files=files)
    return record


def _write_images(rs: RemovalSet, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, x in rs.versions():
        d = out / name.replace(":", "-")
        d.mkdir(exist_ok=True)
        for i, stem in enumerate(rs.ids):
            cv2.imwrite(str(d / f"{stem}.png"), cv2.cvtColor(x[i], cv2.COLOR_RGB2BGR))


#: The validation version of the test, set before any candidate was scored: the published weak masks of
#: the Kaggle validation split's tumour images, the 50% most confident (as the study's main recipe
#: trusts them), grown by 5% of the side, removed with the two fills training never uses.
VALIDATION_TEST = {"keep": 0.5, "filter": "p_in", "dilation": 0.05, "methods": ("telea", "ring")}


def run_validation_lesion_test(
    profile: str = published.PUBLISHED_PROFILE,
    *,
    runs: Sequence[str | os.PathLike] = (),
    include_published: bool = True,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict:
    """The lesion-removal test on the Kaggle **validation** split, where a choice between models may be
    made (the expert-mask test on BRISC is for reporting only): the lesions are the published weak masks
    (`VALIDATION_TEST`; no expert masks exist for Kaggle images), the views the estimated planes
    (`tumorlens.training.views`). Adds ``validation`` (per model) to ``results/<profile>/lesion.json``."""
    cfg = published.recipe_config(None, profile)
    prep = prepare(cfg, show_progress=show_progress)
    lm = published_lesion_masks(cfg, prep, "val", show_progress=show_progress)
    trusted = lm.trusted(VALIDATION_TEST["keep"], VALIDATION_TEST["filter"])
    idx = sorted(trusted)
    x_all = prep.images("val", show_progress)
    y_all = prep.labels("val")
    planes, _ = estimate_views(x_all, prep.root, batch_size=cfg.data.batch_size, show_progress=show_progress)
    x, masks = x_all[idx], np.stack([trusted[i] for i in idx])
    ids = [prep.splits["val"][i].rel for i in idx]
    rs = make_removal_set(
        x,
        masks,
        y_all[idx],
        [str(planes[i]) for i in idx],
        ids,
        dilation=VALIDATION_TEST["dilation"],
        methods=VALIDATION_TEST["methods"],
        seed=seed,
        show_progress=show_progress,
    )
    predictors: dict[str, Callable] = {}
    ensembles: dict[str, list[str]] = {}
    if include_published:
        pub, ensembles, _ = published_predictors(profile)
        predictors |= pub
    predictors |= run_predictors(runs)[0]
    scores, probs = {}, {}
    for name, fn in progress(list(predictors.items()), desc="models", unit="model", disable=not show_progress):
        probs[name] = predict_versions(rs, fn)
        scores[name] = removal_scores(rs, probs[name])
    for name, members in ensembles.items():
        scores[name] = removal_scores(rs, {v: soft_vote([probs[m][v] for m in members]) for v, _ in rs.versions()})
    res = results_dir(profile)
    target = Path(out) if out else res / LESION_FILE
    with updating(target):  # read, merge and write under the lock: a concurrent test keeps its entries
        record = read_json(target, schema="lesion") if target.is_file() else None
        if record is None:
            raise FileNotFoundError(
                f"{paths.relative(target)}: run the expert-mask test first (tumorlens evaluate lesion)"
            )
        val = record.get("validation") or {}
        same = val.get("ids") == ids
        models = {**(val.get("models", {}) if same else {}), **scores}
        record["validation"] = {
            "split": "Kaggle validation (tumour images with a trusted published weak mask)",
            "masks": lm.source,
            "n": len(ids),
            "ids": ids,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in VALIDATION_TEST.items()},
            "models": models,
        }
        write_json(target, record, schema="lesion")
    if target.parent == res and (res / MANIFEST).is_file():
        write_manifest(res, profile, files=[target])
    return record["validation"]
