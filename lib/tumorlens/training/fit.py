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

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from tumorlens.config import Config
from tumorlens.data.pipeline import make_dataset
from tumorlens.models.blocks import EdgeMap
from tumorlens.models.classifier import head_input_names
from tumorlens.models.inference import batched_predict, predict_images
from tumorlens.training.cut import find_cut
from tumorlens.training.prefix_cache import augmentation_for, augmented_view, prefix_outputs

__all__ = ["TrainResult", "train_model"]


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

        log = self

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
                log.rows.append(
                    {
                        "phase": phase,
                        "epoch": epoch + 1,
                        **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"},
                        "lr": lr,
                        "seconds": round(time.perf_counter() - self._t, 3),
                    }
                )

        return _CB()


def _checkpoint(full_model, path: Path):

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


def train_model(
    model,
    backbone: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: Config,
    *,
    x_test: np.ndarray | None = None,
    checkpoint_path: Path | None = None,
    cache_keys: dict[str, str] | None = None,
    sample_weight: np.ndarray | None = None,
    selection: tuple[np.ndarray, np.ndarray] | None = None,
    shuffle: bool = True,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run both phases on uint8 image arrays; returns the trained model (best weights), the history,
    timings and — when ``x_test`` is given — the validation and test probabilities of the best model
    (through the cached prefix when caching is on).

    ``cache_keys`` (``{"train", "val", "test"}``) name the image sets for the on-disk prefix cache
    (`prefix_outputs`): runs that share a backbone, a cut and images reuse the frozen prefix's
    outputs instead of recomputing them. Augmented views are drawn with ``data.seed`` so that runs
    with different model seeds share them.

    ``selection`` ``(images, labels)``: the validation set that chooses the epochs (early stopping, the
    learning-rate schedule, the checkpoint) when it should differ from ``x_val`` (e.g. with the validation
    split's counterfactuals added); the validation predictions are always ``x_val``'s.

    ``sample_weight`` ``(N,)``: a weight per training image (e.g. `tumorlens.data.views.view_balance_weights`),
    multiplied by the class weight of its label when ``train.class_weights`` is on.
    """

    t, a = cfg.train, cfg.augment
    bs = cfg.data.batch_size
    keras.utils.set_random_seed(cfg.seed)
    aug = augmentation_for(a, seed=cfg.seed)
    cw = _class_weights(y_train) if t.class_weights else None
    sw = None
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float32)
        if sample_weight.shape != (len(y_train),):
            raise ValueError(
                f"sample_weight must be ({len(y_train)},), one per training image; got {sample_weight.shape}"
            )
        sw = sample_weight * (np.array([cw[int(c)] for c in y_train], np.float32) if cw else 1.0)
        cw = None  # folded into the per-image weights
    elog = _EpochLog()
    ckpt = _checkpoint(model, checkpoint_path) if checkpoint_path else None
    timings: dict = {}
    predictions: dict[str, np.ndarray] = {}
    aug_seed = cfg.data.seed * 1000
    k, layers = find_cut(model, t.finetune_layers)
    do_finetune = t.finetune_epochs > 0 and t.finetune_layers > 0
    cut_info = {
        "finetune_layers_requested": t.finetune_layers,
        "backbone_layers": len(layers),
        "cut_layer": layers[k].name if k >= 0 else None,
        "trainable_after_cut": len(layers) - 1 - k if k >= 0 else len(layers),
    }

    def callbacks(phase: str):
        cbs = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=t.early_stopping_patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=t.reduce_lr_factor, patience=t.reduce_lr_patience, min_lr=1e-6, verbose=0
            ),
            elog.callback(phase),
        ]
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
            return prefix_outputs(prefix, images_fn, f"{key}-{tag}" if key else None, bs, desc, show_progress, half)

        n_views = t.cached_views

        def view_key(v: int) -> str | None:  # view 0 is the images themselves; the others depend on the augmentation
            k = keys.get("train") if v == 0 else keys.get("train_aug", keys.get("train"))
            return f"{k}-v{v}" if k else None

        views = [
            cached(
                view_key(v),
                (lambda v=v: x_train if v == 0 else augmented_view(x_train, a, aug_seed + v, bs)),
                f"caching view {v + 1}/{n_views}",
            )
            for v in range(n_views)
        ]
        val_c = cached(keys.get("val"), lambda: x_val, "caching val", half=False)
        if selection is not None:
            sel_c = cached(keys.get("val_sel"), lambda: selection[0], "caching selection", half=False)
            y_sel = selection[1]
        else:
            sel_c, y_sel = val_c, y_val
        train_cut = [np.concatenate([vw[0] for vw in views]), np.concatenate([vw[1] for vw in views])]
        y_views = np.concatenate([y_train] * n_views)
        w_views = None if sw is None else np.concatenate([sw] * n_views)

        def inputs(c):  # (cut activations, edges) -> the inputs a head/suffix model expects
            return [c[0], c[1]] if extra_t else [c[0]]

        if cut_t is feat_t[0]:
            train_feat, val_feat = inputs(train_cut), inputs(sel_c)
        else:
            mid = keras.Model(cut_t, feat_t[0])
            train_feat = inputs([batched_predict(mid, [train_cut[0]], bs, "features", show_progress)[0], train_cut[1]])
            val_feat = inputs([batched_predict(mid, [sel_c[0]], bs, "features (val)", False)[0], sel_c[1]])
        timings["cache_seconds"] = round(time.perf_counter() - t0, 2)
        keras.utils.set_random_seed(cfg.seed)  # the same state whether the cache was hit or not
        if t.warmup_epochs > 0:
            head = keras.Model(feat_t, model.outputs)
            compile_(head, t.warmup_lr)
            t0 = time.perf_counter()
            head.fit(
                train_feat,
                y_views,
                validation_data=(val_feat, y_sel),
                epochs=t.warmup_epochs,
                batch_size=bs,
                class_weight=cw,
                sample_weight=w_views,
                shuffle=shuffle,
                callbacks=callbacks("warmup"),
                verbose=2,
            )
            timings["warmup_seconds"] = round(time.perf_counter() - t0, 2)
            del head
        # the warm-up's feature maps (gigabytes for a large training set) are not needed any more
        del train_feat, val_feat
        gc.collect()
        suffix = keras.Model([cut_t, *extra_t], model.outputs)
        if do_finetune:
            for lay in layers[k + 1 :]:
                lay.trainable = not isinstance(lay, keras.layers.BatchNormalization)
            compile_(suffix, t.finetune_lr)
            t0 = time.perf_counter()
            nv = min(n_views, t.finetune_views or n_views)  # phase 2 may use fewer views (its epochs cost more)
            ft = [c[: nv * len(y_train)] for c in inputs(train_cut)]
            suffix.fit(
                ft,
                y_views[: nv * len(y_train)],
                validation_data=(inputs(sel_c), y_sel),
                epochs=t.finetune_epochs,
                batch_size=bs,
                class_weight=cw,
                sample_weight=None if w_views is None else w_views[: nv * len(y_train)],
                shuffle=shuffle,
                callbacks=callbacks("finetune"),
                verbose=2,
            )
            timings["finetune_seconds"] = round(time.perf_counter() - t0, 2)
        if checkpoint_path and Path(checkpoint_path).is_file():
            model.load_weights(checkpoint_path)  # the best epoch of both phases
        if x_test is not None:
            predictions["val"] = batched_predict(suffix, inputs(val_c), bs, "predicting val", False)[0]
            test_c = cached(keys.get("test"), lambda: x_test, "caching test", half=False)
            predictions["test"] = batched_predict(suffix, inputs(test_c), bs, "predicting test", False)[0]
    else:
        ds_tr = make_dataset(
            x_train, y_train, batch_size=bs, training=shuffle, augment=aug, seed=cfg.seed, sample_weight=sw
        )
        if not shuffle:  # deterministic order: no shuffling and no augmentation
            ds_tr = make_dataset(x_train, y_train, batch_size=bs, training=False, seed=cfg.seed, sample_weight=sw)
        ds_va = make_dataset(*(selection or (x_val, y_val)), batch_size=bs)
        if t.warmup_epochs > 0:
            compile_(model, t.warmup_lr)
            t0 = time.perf_counter()
            model.fit(
                ds_tr,
                validation_data=ds_va,
                epochs=t.warmup_epochs,
                class_weight=cw,
                shuffle=False,
                callbacks=callbacks("warmup"),
                verbose=2,
            )
            timings["warmup_seconds"] = round(time.perf_counter() - t0, 2)
        if do_finetune:
            start = k + 1 if k >= 0 else 0
            for lay in layers[start:]:
                lay.trainable = not isinstance(lay, keras.layers.BatchNormalization)
            compile_(model, t.finetune_lr)
            t0 = time.perf_counter()
            model.fit(
                ds_tr,
                validation_data=ds_va,
                epochs=t.finetune_epochs,
                class_weight=cw,
                shuffle=False,
                callbacks=callbacks("finetune"),
                verbose=2,
            )
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
