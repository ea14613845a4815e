"""One training run end to end: data, model, both phases, and the run directory (`tumorlens.records`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from tumorlens import records
from tumorlens.config import CLASSES, Config
from tumorlens.data.lesion import counterfactual_set
from tumorlens.data.prepared import prepare
from tumorlens.data.views import view_balance_weights, view_counts
from tumorlens.models.classifier import build_classifier, load_model, variant_name
from tumorlens.models.inference import predict_images
from tumorlens.training.fit import train_model
from tumorlens.training.prefix_cache import cache_keys
from tumorlens.training.strategy import describe, make_strategy
from tumorlens.training.views import estimate_views
from tumorlens.utils import determinism
from tumorlens.utils.environment import environment
from tumorlens.utils.files import write_json

__all__ = ["run_dir_for", "train_run"]


def run_dir_for(cfg: Config) -> Path:

    return cfg.runs_root / variant_name(cfg.model.backbone, cfg.model.modules) / f"seed-{cfg.seed}"


def train_run(
    cfg: Config,
    prep=None,
    run_dir: str | Path | None = None,
    *,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    lesion_masks=None,
    val_lesion_masks=None,
) -> dict:
    """Train one configuration end to end and write its run directory; returns the summary dict.

    ``lesion_masks``: the weak lesion masks of the training split's tumour images (an object with
    ``trusted(keep, score) -> {split index: bool (S, S)}`` and a ``source`` dict, e.g.
    `tumorlens.experiments.counterfactual.LesionMasks`), needed when ``train.counterfactual.share`` is on;
    ``val_lesion_masks`` those of the validation split, when ``train.counterfactual.validation`` is on (its
    counterfactuals then join the validation images that choose the epochs).

    The run is written to a fresh staging folder beside ``run_dir`` and moved into place only when it
    completed and its model and predictions are finite; a failed (re)run therefore never leaves a
    half-written run, nor a stale ``metrics.json`` beside a new model. Files already in ``run_dir``
    that a run does not write (the runner's notebook copies) are carried over.
    """

    t_start = time.perf_counter()
    det = determinism.configure(cfg.train.deterministic, cfg.train.threads)
    final = Path(run_dir) if run_dir else run_dir_for(cfg)
    final.parent.mkdir(parents=True, exist_ok=True)
    run_dir = final.parent / f".{final.name}.partial"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    try:
        summary = _train_into(
            cfg, prep, run_dir, final, show_progress, log, t_start, det, lesion_masks, val_lesion_masks
        )
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    _move_into_place(run_dir, final)
    return summary


def _move_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging``, keeping the files of ``final`` a run does not write."""
    written = {records.MODEL, records.CONFIG, *records.RUN_FILES}
    if final.exists():
        for f in final.iterdir():
            if f.name not in written and not (staging / f.name).exists():
                shutil.move(str(f), staging / f.name)
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


def _check_finite(model, probs: dict[str, np.ndarray]) -> None:
    bad = [w.path for w in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(w)))]
    if bad:
        raise RuntimeError(f"training produced non-finite weights (e.g. {bad[0]}); the run is not saved")
    for split, p in probs.items():
        if not np.all(np.isfinite(p)):
            raise RuntimeError(f"training produced non-finite {split} predictions; the run is not saved")


def _view_weights(cfg: Config, prep, x_tr, y_tr, keys, show_progress: bool, log) -> tuple:
    """``train.view_balance``: per-image weights from the estimated planes, and their record
    (the estimate's check, the planes per class, the weights per class and plane); ``(None, None)`` off."""
    balance = cfg.train.view_balance
    if not balance:
        return None, None
    key = f"{keys['train']}-views" if keys and keys.get("train") else None
    planes, record = estimate_views(
        x_tr, prep.root, batch_size=cfg.data.batch_size, cache_key=key, show_progress=show_progress
    )
    w = view_balance_weights(y_tr, planes, balance)
    counts = view_counts(y_tr, planes, CLASSES)
    per_cell = {
        cls: {v: round(float(w[(y_tr == i) & (planes == v)][0]), 4) for v in counts[cls] if counts[cls][v]}
        for i, cls in enumerate(CLASSES)
    }
    acc = record["labelled"]["cv_accuracy"]
    log(
        f"view balance {balance}: planes estimated (cross-validated accuracy on {record['labelled']['n']} "
        f"hand labels {acc if acc is None else round(acc, 3)}); no-tumour {counts.get('notumor')}"
    )
    return w, {**record, "balance": balance, "train_counts": counts, "weights": per_cell}


def _counterfactuals(cfg: Config, x_tr, y_tr, lesion_masks, keys, log, seed_offset: int = 0) -> tuple:
    """``train.counterfactual``: the training images with lesion-removed no-tumour copies and controls
    added (`tumorlens.data.lesion.counterfactual_set`), the prefix-cache key of the new training set,
    and the record; unchanged ``(x, y, keys, None)`` when off."""
    cf = cfg.train.counterfactual
    if not cf.share:
        return x_tr, y_tr, keys, None
    if lesion_masks is None:
        raise ValueError(
            "train.counterfactual.share is on but no lesion masks were given: train through "
            "tumorlens.experiments.counterfactual.train (as `tumorlens train` and the notebooks do)"
        )
    trusted = lesion_masks.trusted(cf.keep, cf.filter)
    shape = next(iter(trusted.values())).shape if trusted else x_tr.shape[1:3]
    if tuple(shape) != tuple(x_tr.shape[1:3]):
        raise ValueError(f"lesion masks of {shape} px do not fit the training images of {x_tr.shape[1:3]} px")
    x, y, record = counterfactual_set(
        x_tr,
        y_tr,
        trusted,
        notumor=CLASSES.index("notumor"),
        share=cf.share,
        dilation=cf.dilation,
        method=cf.method,
        control=cf.control,
        transplant=cf.transplant,
        seed=cfg.data.seed + seed_offset,
    )
    made_with = {k: v for k, v in dataclasses.asdict(cf).items() if k != "validation"}  # what makes the images
    settings = json.dumps([made_with, lesion_masks.source], sort_keys=True, default=str)
    tag = hashlib.sha1(settings.encode()).hexdigest()[:12]
    if keys:
        keys = {**keys, "train": f"{keys['train']}-cf{tag}", "train_aug": f"{keys['train_aug']}-cf{tag}"}
    log(
        f"counterfactuals: {record['counterfactuals']} lesion-removed no-tumour images from {len(trusted)} trusted "
        f"masks, {record['transplants']} lesions pasted into no-tumour images; controls per class "
        f"{record['controls']} ({record['no_place']} found no place)"
    )
    record = {
        **{k: v for k, v in record.items() if k != "sources"},
        "trusted": len(trusted),
        "masks": lesion_masks.source,
        "tag": tag,
    }
    return x, y, keys, record


def _train_into(
    cfg,
    prep,
    run_dir: Path,
    final: Path,
    show_progress: bool,
    log,
    t_start: float,
    det: dict,
    lesion_masks=None,
    val_lesion_masks=None,
) -> dict:
    prep = prep or prepare(cfg, show_progress=show_progress)
    x_tr, y_tr = prep.images("train", show_progress), prep.labels("train")
    x_va, y_va = prep.images("val", show_progress), prep.labels("val")
    keras.utils.set_random_seed(cfg.seed)
    m = cfg.model
    vit = cfg.to_dict()["model"]["vit"] if m.backbone == "vit" else None
    strategy = make_strategy(cfg.train.strategy)
    keys = cache_keys(cfg, prep) if (cfg.data.cache and cfg.train.prefix_cache) else None
    x_tr, y_tr, keys, counterfactual = _counterfactuals(cfg, x_tr, y_tr, lesion_masks, keys, log)
    selection = None
    if counterfactual is not None and cfg.train.counterfactual.validation:
        if val_lesion_masks is None:
            raise ValueError("train.counterfactual.validation is on but no validation lesion masks were given")
        x_sel, y_sel, _, sel_record = _counterfactuals(cfg, x_va, y_va, val_lesion_masks, None, log, seed_offset=1)
        selection = (x_sel, y_sel)
        if keys:
            keys = {**keys, "val_sel": f"{keys['val']}-cf{sel_record['tag']}-sel"}
        counterfactual["validation"] = {k: sel_record[k] for k in ("counterfactuals", "controls", "trusted")}
    x_te = prep.images("test", show_progress)
    weights, views = _view_weights(cfg, prep, x_tr, y_tr, keys, show_progress, log)
    with strategy.scope():  # variables (model and optimiser) live on the strategy's devices
        model = build_classifier(
            m.backbone,
            m.modules,
            image_size=cfg.data.image_size,
            weights=m.weights,
            dropout=m.dropout,
            vit=vit,
            pooling=m.pooling,
        )
        result = train_model(
            model,
            m.backbone,
            x_tr,
            y_tr,
            x_va,
            y_va,
            cfg,
            x_test=x_te,
            checkpoint_path=run_dir / records.MODEL,
            cache_keys=keys,
            sample_weight=weights,
            selection=selection,
            show_progress=show_progress,
            log=log,
        )
    _check_finite(result.model, result.predictions)
    if not (run_dir / records.MODEL).is_file():  # no epoch ran (both phases off)
        result.model.save(run_dir / records.MODEL)
    # The numbers come from the best model's predictions (through the cached prefix when caching is on);
    # check on a few test images that the saved model.keras -- what users load -- gives the same.
    t0 = time.perf_counter()
    best = load_model(run_dir)
    _check_finite(best, {})
    probs = result.predictions["test"]
    n_chk = min(16, len(x_te))
    diff = (
        float(np.abs(predict_images(best, x_te[:n_chk], cfg.data.batch_size) - probs[:n_chk]).max()) if n_chk else 0.0
    )
    if diff > 1e-3:
        raise RuntimeError(
            f"the saved model disagrees with the training-time predictions (max |dp| = {diff:.2e}); "
            f"rerun with train.prefix_cache: false and report this"
        )
    result.timings["saved_model_check"] = {
        "images": n_chk,
        "max_abs_prob_diff": diff,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    metrics = records.write_test_results(run_dir, prep.splits["test"], probs, set(prep.dedup_test))
    records.write_predictions(run_dir / records.VAL_PREDICTIONS, prep.splits["val"], result.predictions["val"])
    records.write_history(run_dir / records.HISTORY, result.history)
    wall = round(time.perf_counter() - t_start, 1)
    summary = {
        "run_dir": str(final),
        "variant": best.name,
        "backbone": m.backbone,
        "modules": list(m.modules),
        "seed": cfg.seed,
        "parameters": int(best.count_params()),
        "accuracy": metrics["official"]["accuracy"],
        "macro_f1": metrics["official"]["macro_f1"],
        "dedup_accuracy": metrics["dedup"].get("accuracy"),
        "dedup_macro_f1": metrics["dedup"].get("macro_f1"),
        "n_train": int(len(y_tr)),
        "n_val": int(len(y_va)),
        "n_test": int(len(probs)),
        "n_test_dedup": int(metrics["dedup"]["n"]),
        "wall_seconds": wall,
        "timings": result.timings,
        "cut": result.cut,
    }
    if views is not None:
        summary["views"] = views
    if counterfactual is not None:
        summary["counterfactual"] = counterfactual
    write_json(
        run_dir / records.CONFIG,
        {
            "config": cfg.to_dict(),
            "dataset": prep.report.dataset(),
            "environment": {**environment(), "determinism": det, "distribution": describe(strategy)},
            "summary": summary,
        },
        schema="run",
    )
    return summary
