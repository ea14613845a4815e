"""Two-phase transfer learning with prefix caching, and the run directory it writes.

Phase 1 (warm-up) trains the modules and head with the whole backbone frozen. Phase 2 (fine-tuning)
also trains the last ``finetune_layers`` backbone layers — BatchNormalization layers stay frozen,
i.e. in inference mode. Both phases use class weights, ReduceLROnPlateau, EarlyStopping (best
weights restored) and a checkpoint of the best full model (``model.keras``, lowest validation loss).

**Prefix caching** (``train.prefix_cache``). Frozen layers give the same output every epoch, so
they are computed once:

- the fine-tuning *cut* is the last block boundary (a tensor every later layer depends on alone)
  that leaves at least ``finetune_layers`` backbone layers after it;
- for every training image, ``cached_views`` views are made once — view 0 the image itself, the
  others augmented — and pushed through the frozen prefix up to the cut (and through the rest of
  the backbone to its features for phase 1);
- phase 1 trains the head on the cached features, phase 2 the layers after the cut on the cached
  cut activations. The head and suffix are sub-models sharing the full model's layers, so the full
  model is trained in place. The uncached path (``prefix_cache: false``) trains the full model on
  freshly augmented images every epoch; on the same data the two give the same weights (tested).

The run directory receives ``model.keras``, ``history.csv``, ``config.json`` (resolved config, git
commit, package versions, timings), ``metrics.json`` (official test split and its de-duplicated
subset), ``predictions.csv`` (path relative to the dataset root, true class, 4 probabilities) and
``val_predictions.csv`` (the same for validation, used to pick ensemble members without the test set).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tumorlens.config import CLASSES, Config
from tumorlens.progress import progress

__all__ = ["find_cut", "valid_cuts", "TrainResult", "train_model", "train_run", "predict_images", "run_dir_for",
           "evaluate_run", "write_predictions", "cached_prefix_file"]


# ------------------------------------------------------------------------------------------------
# graph surgery
def _parents(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    return [pn.operation for pn in nodes[0].parent_nodes]


def valid_cuts(model, backbone_layer_list: Sequence) -> list[int]:
    """Indices ``k`` into ``backbone_layer_list`` such that every layer after ``k`` depends only on
    layer ``k`` and later ones (a tensor that separates the backbone graph)."""
    index = {id(lay): i for i, lay in enumerate(backbone_layer_list)}
    n = len(backbone_layer_list)
    pmin = np.full(n, n, dtype=int)
    for j, lay in enumerate(backbone_layer_list):
        ps = [index.get(id(p), -1) for p in _parents(lay)]
        pmin[j] = min(ps) if ps else -1
    suffix_min = np.full(n + 1, n, dtype=int)
    for j in range(n - 1, -1, -1):
        suffix_min[j] = min(pmin[j], suffix_min[j + 1])
    return [k for k in range(n) if suffix_min[k + 1] >= k]


def find_cut(model, finetune_layers: int) -> tuple[int, list]:
    """``(k, layers)``: the cut index into the backbone layers for fine-tuning the last
    ``finetune_layers`` layers (at least that many follow the cut), and the backbone layers."""
    from tumorlens.models import backbone_layers

    layers = backbone_layers(model)
    n = len(layers)
    cuts = valid_cuts(model, layers)
    ok = [k for k in cuts if n - 1 - k >= finetune_layers]
    return (max(ok) if ok else -1), layers


# ------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: object
    history: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    cut: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)  # "val" / "test" -> probabilities of the best model


class _EpochLog:
    """Collects one row per epoch (phase, metrics, learning rate, seconds)."""

    def __init__(self):
        self.rows: list[dict] = []

    def callback(self, phase: str):
        import keras

        log = self

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
                log.rows.append({"phase": phase, "epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()
                                                                       if k != "learning_rate"},
                                 "lr": lr, "seconds": round(time.perf_counter() - self._t, 3)})

        return _CB()


def _checkpoint(full_model, path: Path):
    import keras

    class FullModelCheckpoint(keras.callbacks.ModelCheckpoint):
        """ModelCheckpoint that always saves the full classifier, also while a head/suffix sub-model trains."""

        def set_model(self, model):
            super().set_model(full_model)

    return FullModelCheckpoint(str(path), monitor="val_loss", save_best_only=True, verbose=0)


def _class_weights(y: np.ndarray) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(v) for c, v in zip(present, w)}


def _batched_predict(model, inputs: list[np.ndarray], batch_size: int, desc: str, show: bool) -> list[np.ndarray]:
    n = len(inputs[0])
    chunk = max(batch_size, 256)
    outs: list[list[np.ndarray]] = []
    for s in progress(range(0, n, chunk), total=-(-n // chunk), desc=desc, unit="chunk", disable=not show):
        part = [a[s:s + chunk] for a in inputs]
        r = model.predict(part if len(part) > 1 else part[0], batch_size=batch_size, verbose=0)
        outs.append(r if isinstance(r, list) else [r])
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def _prefix_outputs(prefix, images_fn: Callable[[], np.ndarray], key: str | None, batch_size: int, desc: str,
                    show: bool, half: bool = True) -> list[np.ndarray]:
    """Outputs of the frozen prefix for a set of images, from ``$TUMORLENS_CACHE/prefix/<key>.npz``
    when present, else computed (and stored when ``key`` is given). Training views are stored as
    float16 (``half``); evaluation sets in full precision, so predictions match the saved model."""
    from tumorlens import paths

    file = paths.cache_root() / "prefix" / f"{key}.npz" if key else None
    if file is not None and file.is_file():
        try:
            with np.load(file) as z:
                return [z["cut"].astype(np.float32), z["edges"].astype(np.float32)]
        except (OSError, ValueError, KeyError):
            pass
    out = _batched_predict(prefix, [images_fn().astype("float32")], batch_size, desc, show)
    if file is not None:  # a cache hit and a miss must train on identical numbers: round both alike
        stored = [o.astype(np.float16 if half else np.float32) for o in out]
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(file.stem + ".tmp.npz")
            np.savez(tmp, cut=stored[0], edges=stored[1])
            tmp.replace(file)
        except OSError:
            pass
        out = [h.astype(np.float32) for h in stored]
    return out


def _augmented(images: np.ndarray, a, seed: int, batch_size: int) -> np.ndarray:
    """One augmented view of every image: a pure function of (images, augmentation settings, seed)."""
    from tumorlens.data import augmentation

    aug = augmentation(a.rotation, a.zoom, a.translation, a.contrast, seed=seed)
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        x = aug(images[s:s + batch_size].astype("float32"), training=True)
        out[s:s + batch_size] = np.clip(np.asarray(x), 0, 255).round().astype(np.uint8)
    return out


def train_model(model, backbone: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                cfg: Config, *, x_test: np.ndarray | None = None, checkpoint_path: Path | None = None,
                cache_keys: dict[str, str] | None = None, shuffle: bool = True,
                show_progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """Run both phases on uint8 image arrays; returns the trained model (best weights), the history,
    timings and — when ``x_test`` is given — the validation and test probabilities of the best model
    (through the cached prefix when caching is on).

    ``cache_keys`` (``{"train", "val", "test"}``) name the image sets for the on-disk prefix cache
    (`_prefix_outputs`): runs that share a backbone, a cut and images reuse the frozen prefix's
    outputs instead of recomputing them. Augmented views are drawn with ``data.seed`` so that runs
    with different model seeds share them.
    """
    import keras

    from tumorlens.blocks import EdgeMap
    from tumorlens.data import augmentation, make_dataset
    from tumorlens.models import head_input_names

    t, a = cfg.train, cfg.augment
    bs = cfg.data.batch_size
    keras.utils.set_random_seed(cfg.seed)
    aug = augmentation(a.rotation, a.zoom, a.translation, a.contrast, seed=cfg.seed)
    cw = _class_weights(y_train) if t.class_weights else None
    elog = _EpochLog()
    ckpt = _checkpoint(model, checkpoint_path) if checkpoint_path else None
    timings: dict = {}
    predictions: dict[str, np.ndarray] = {}
    aug_seed = cfg.data.seed * 1000
    k, layers = find_cut(model, t.finetune_layers)
    do_finetune = t.finetune_epochs > 0 and t.finetune_layers > 0
    cut_info = {"finetune_layers_requested": t.finetune_layers, "backbone_layers": len(layers),
                "cut_layer": layers[k].name if k >= 0 else None,
                "trainable_after_cut": len(layers) - 1 - k if k >= 0 else len(layers)}

    def callbacks(phase: str):
        cbs = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=t.early_stopping_patience,
                                             restore_best_weights=True),
               keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=t.reduce_lr_factor,
                                                 patience=t.reduce_lr_patience, min_lr=1e-6, verbose=0),
               elog.callback(phase)]
        return cbs + ([ckpt] if ckpt else [])

    def compile_(m, lr):
        m.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    for lay in layers:
        lay.trainable = False
    use_cache = t.prefix_cache and (k >= 0 or not do_finetune)
    if t.prefix_cache and not use_cache:
        log(f"prefix cache off: no block boundary leaves {t.finetune_layers} layers to fine-tune")
    head_names = head_input_names(model, backbone)
    feat_t = [model.get_layer(n).output for n in head_names]

    if use_cache:
        t0 = time.perf_counter()
        cut_t = layers[k].output if (do_finetune and k >= 0) else feat_t[0]
        extra_t = feat_t[1:]  # the SBR edge map input of the head, when the model has SBR
        grid = tuple(int(d) for d in feat_t[0].shape[1:3])
        prefix = keras.Model(model.inputs, [cut_t, EdgeMap(grid, name="cache_edges")(model.inputs[0])])
        keys = dict(cache_keys or {})
        tag = f"{layers[k].name if cut_t is not feat_t[0] else head_names[0]}-{grid[0]}x{grid[1]}"

        def cached(key, images_fn, desc, half=True):
            return _prefix_outputs(prefix, images_fn, f"{key}-{tag}" if key else None, bs, desc, show_progress, half)

        n_views = t.cached_views
        views = [cached(f"{keys['train']}-v{v}" if keys.get("train") else None,
                        (lambda v=v: x_train if v == 0 else _augmented(x_train, a, aug_seed + v, bs)),
                        f"caching view {v + 1}/{n_views}") for v in range(n_views)]
        val_c = cached(keys.get("val"), lambda: x_val, "caching val", half=False)
        train_cut = [np.concatenate([vw[0] for vw in views]), np.concatenate([vw[1] for vw in views])]
        y_views = np.concatenate([y_train] * n_views)

        def inputs(c):  # (cut activations, edges) -> the inputs a head/suffix model expects
            return [c[0], c[1]] if extra_t else [c[0]]

        if cut_t is feat_t[0]:
            train_feat, val_feat = inputs(train_cut), inputs(val_c)
        else:
            mid = keras.Model(cut_t, feat_t[0])
            train_feat = inputs([_batched_predict(mid, [train_cut[0]], bs, "features", show_progress)[0], train_cut[1]])
            val_feat = inputs([_batched_predict(mid, [val_c[0]], bs, "features (val)", False)[0], val_c[1]])
        timings["cache_seconds"] = round(time.perf_counter() - t0, 2)
        keras.utils.set_random_seed(cfg.seed)  # the same state whether the cache was hit or not
        if t.warmup_epochs > 0:
            head = keras.Model(feat_t, model.outputs)
            compile_(head, t.warmup_lr)
            t0 = time.perf_counter()
            head.fit(train_feat, y_views, validation_data=(val_feat, y_val), epochs=t.warmup_epochs, batch_size=bs,
                     class_weight=cw, shuffle=shuffle, callbacks=callbacks("warmup"), verbose=2)
            timings["warmup_seconds"] = round(time.perf_counter() - t0, 2)
        suffix = keras.Model([cut_t, *extra_t], model.outputs)
        if do_finetune:
            for lay in layers[k + 1:]:
                lay.trainable = not isinstance(lay, keras.layers.BatchNormalization)
            compile_(suffix, t.finetune_lr)
            t0 = time.perf_counter()
            nv = min(n_views, t.finetune_views or n_views)  # phase 2 may use fewer views (its epochs cost more)
            ft = [c[: nv * len(y_train)] for c in inputs(train_cut)]
            suffix.fit(ft, y_views[: nv * len(y_train)], validation_data=(inputs(val_c), y_val),
                       epochs=t.finetune_epochs, batch_size=bs, class_weight=cw, shuffle=shuffle,
                       callbacks=callbacks("finetune"), verbose=2)
            timings["finetune_seconds"] = round(time.perf_counter() - t0, 2)
        if checkpoint_path and Path(checkpoint_path).is_file():
            model.load_weights(checkpoint_path)  # the best epoch of both phases
        if x_test is not None:
            predictions["val"] = _batched_predict(suffix, inputs(val_c), bs, "predicting val", False)[0]
            test_c = cached(keys.get("test"), lambda: x_test, "caching test", half=False)
            predictions["test"] = _batched_predict(suffix, inputs(test_c), bs, "predicting test", False)[0]
    else:
        ds_tr = make_dataset(x_train, y_train, batch_size=bs, training=shuffle, augment=aug, seed=cfg.seed)
        if not shuffle:  # deterministic order: no shuffling and no augmentation
            ds_tr = make_dataset(x_train, y_train, batch_size=bs, training=False, seed=cfg.seed)
        ds_va = make_dataset(x_val, y_val, batch_size=bs)
        if t.warmup_epochs > 0:
            compile_(model, t.warmup_lr)
            t0 = time.perf_counter()
            model.fit(ds_tr, validation_data=ds_va, epochs=t.warmup_epochs, class_weight=cw, shuffle=False,
                      callbacks=callbacks("warmup"), verbose=2)
            timings["warmup_seconds"] = round(time.perf_counter() - t0, 2)
        if do_finetune:
            start = k + 1 if k >= 0 else 0
            for lay in layers[start:]:
                lay.trainable = not isinstance(lay, keras.layers.BatchNormalization)
            compile_(model, t.finetune_lr)
            t0 = time.perf_counter()
            model.fit(ds_tr, validation_data=ds_va, epochs=t.finetune_epochs, class_weight=cw, shuffle=False,
                      callbacks=callbacks("finetune"), verbose=2)
            timings["finetune_seconds"] = round(time.perf_counter() - t0, 2)
    if not use_cache:
        if checkpoint_path and Path(checkpoint_path).is_file():
            model.load_weights(checkpoint_path)
        if x_test is not None:
            predictions["val"] = predict_images(model, x_val, bs)
            predictions["test"] = predict_images(model, x_test, bs)
    for phase in ("warmup", "finetune"):
        secs = [r["seconds"] for r in elog.rows if r["phase"] == phase]
        if secs:
            timings[f"{phase}_epoch_seconds_mean"] = round(float(np.mean(secs)), 3)
    timings["prefix_cache"] = use_cache
    return TrainResult(model, elog.rows, timings, cut_info, predictions)


def predict_images(model, images: np.ndarray, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Class probabilities ``(N, 4)`` for uint8 images ``(N, S, S, 3)``."""
    if len(images) == 0:
        return np.zeros((0, len(CLASSES)), np.float32)
    return _batched_predict(model, [images.astype("float32")], batch_size, "predicting", show_progress)[0]


# ------------------------------------------------------------------------------------------------
def run_dir_for(cfg: Config) -> Path:
    from tumorlens.models import variant_name

    return cfg.runs_root / variant_name(cfg.model.backbone, cfg.model.modules) / f"seed-{cfg.seed}"


def write_predictions(path: Path, records, probs: np.ndarray, dedup: set[str] | None = None) -> None:
    """Per-image CSV: path (relative to the dataset root), true class, the 4 probabilities, the
    predicted class and — for test sets — whether the image is in the de-duplicated subset."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true_class", *[f"p_{c}" for c in CLASSES], "pred_class",
                    *(["dedup"] if dedup is not None else [])])
        for r, p in zip(records, probs):
            w.writerow([r.rel, r.cls, *[f"{v:.6f}" for v in p], CLASSES[int(np.argmax(p))],
                        *([int(r.rel in dedup)] if dedup is not None else [])])


def evaluate_run(run_dir: Path, probs: np.ndarray, records, dedup: set[str]) -> dict:
    """Write ``metrics.json`` and ``predictions.csv`` for test records; return the metrics."""
    from tumorlens.metrics import classification_metrics
    from tumorlens.runinfo import write_json

    y = np.array([r.label for r in records], dtype=int)
    mask = np.array([r.rel in dedup for r in records], dtype=bool)
    metrics = {"official": classification_metrics(y, probs), "dedup": classification_metrics(y[mask], probs[mask])}
    write_json(run_dir / "metrics.json", metrics)
    write_predictions(run_dir / "predictions.csv", records, probs, dedup)
    return metrics


def cached_prefix_file(model, cfg: Config, prep, split: str) -> tuple[Path, object, list] | None:
    """The shared prefix-cache file holding ``split``'s frozen-prefix outputs for a model trained
    with ``cfg`` (view 0 for train), with the cut tensor and head inputs to feed; None if absent."""
    from tumorlens import paths
    from tumorlens.models import head_input_names

    if not (cfg.data.cache and cfg.train.prefix_cache):
        return None
    t = cfg.train
    k, layers = find_cut(model, t.finetune_layers)
    do_finetune = t.finetune_epochs > 0 and t.finetune_layers > 0
    names = head_input_names(model, cfg.model.backbone)
    feat = model.get_layer(names[0]).output
    if do_finetune and k < 0:
        return None
    cut_name = layers[k].name if do_finetune else names[0]
    grid = tuple(int(d) for d in feat.shape[1:3])
    key = _cache_keys(cfg, prep)[split] + ("-v0" if split == "train" else "")
    file = paths.cache_root() / "prefix" / f"{key}-{cut_name}-{grid[0]}x{grid[1]}.npz"
    if not file.is_file():
        return None
    extra = [model.get_layer(n).output for n in names[1:]]
    return file, model.get_layer(cut_name).output, extra


def _cache_keys(cfg: Config, prep) -> dict[str, str]:
    """Names of the image sets for the shared prefix cache: everything the frozen prefix's outputs
    depend on except the cut (added by `train_model`)."""
    import hashlib

    m, a = cfg.model, cfg.augment
    weights = m.weights
    if weights not in ("imagenet", "none"):
        st = Path(weights).expanduser().stat()
        weights = f"{Path(weights).name}-{st.st_size}-{st.st_mtime_ns}"
    elif weights == "none":
        weights = f"random{cfg.seed}"  # a random backbone differs per model seed: nothing to share
    base = f"{m.backbone}|{weights}|{cfg.data.image_size}|{a.rotation}|{a.zoom}|{a.translation}|{a.contrast}|{cfg.data.seed}"
    out = {}
    for split in ("train", "val", "test"):
        h = hashlib.sha1(base.encode())
        for r in prep.splits[split]:
            st = r.path.stat()
            h.update(f"{r.rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        out[split] = f"{m.backbone}-{split}-{h.hexdigest()[:16]}"
    return out


def train_run(cfg: Config, prep=None, run_dir: str | Path | None = None, *, show_progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Train one configuration end to end and write its run directory; returns the summary dict."""
    import keras

    from tumorlens.data import prepare
    from tumorlens.models import build_classifier, load_model
    from tumorlens.runinfo import environment, write_json

    t_start = time.perf_counter()
    run_dir = Path(run_dir) if run_dir else run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    prep = prep or prepare(cfg, show_progress=show_progress)
    x_tr, y_tr = prep.images("train", show_progress), prep.labels("train")
    x_va, y_va = prep.images("val", show_progress), prep.labels("val")
    keras.utils.set_random_seed(cfg.seed)
    m = cfg.model
    vit = cfg.to_dict()["model"]["vit"] if m.backbone == "vit" else None
    model = build_classifier(m.backbone, m.modules, image_size=cfg.data.image_size, weights=m.weights,
                             dropout=m.dropout, vit=vit)
    keys = _cache_keys(cfg, prep) if (cfg.data.cache and cfg.train.prefix_cache) else None
    x_te = prep.images("test", show_progress)
    result = train_model(model, m.backbone, x_tr, y_tr, x_va, y_va, cfg, x_test=x_te,
                         checkpoint_path=run_dir / "model.keras", cache_keys=keys, show_progress=show_progress, log=log)
    if not (run_dir / "model.keras").is_file():  # no epoch ran (both phases off)
        result.model.save(run_dir / "model.keras")
    # The numbers come from the best model's predictions (through the cached prefix when caching is on);
    # check on a few test images that the saved model.keras -- what users load -- gives the same.
    t0 = time.perf_counter()
    best = load_model(run_dir)
    probs = result.predictions["test"]
    n_chk = min(16, len(x_te))
    diff = float(np.abs(predict_images(best, x_te[:n_chk], cfg.data.batch_size) - probs[:n_chk]).max()) if n_chk else 0.0
    if diff > 1e-3:
        raise RuntimeError(f"the saved model disagrees with the training-time predictions (max |dp| = {diff:.2e}); "
                           f"rerun with train.prefix_cache: false and report this")
    result.timings["saved_model_check"] = {"images": n_chk, "max_abs_prob_diff": diff,
                                           "seconds": round(time.perf_counter() - t0, 2)}
    metrics = evaluate_run(run_dir, probs, prep.splits["test"], set(prep.dedup_test))
    write_predictions(run_dir / "val_predictions.csv", prep.splits["val"], result.predictions["val"])
    with open(run_dir / "history.csv", "w", newline="") as f:
        keys = sorted({k for r in result.history for k in r}, key=lambda k: (k not in ("phase", "epoch"), k))
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(result.history)
    wall = round(time.perf_counter() - t_start, 1)
    summary = {"run_dir": str(run_dir), "variant": best.name, "backbone": m.backbone, "modules": list(m.modules),
               "seed": cfg.seed, "parameters": int(best.count_params()),
               "accuracy": metrics["official"]["accuracy"], "macro_f1": metrics["official"]["macro_f1"],
               "dedup_accuracy": metrics["dedup"].get("accuracy"), "dedup_macro_f1": metrics["dedup"].get("macro_f1"),
               "n_train": int(len(y_tr)), "n_val": int(len(y_va)), "n_test": int(len(probs)),
               "n_test_dedup": int(metrics["dedup"]["n"]), "wall_seconds": wall,
               "timings": result.timings, "cut": result.cut}
    write_json(run_dir / "config.json", {"config": cfg.to_dict(), "data_root": str(prep.root),
                                         "environment": environment(), "summary": summary})
    return summary
