"""Running a trained classifier: class probabilities and penultimate features, in chunks."""

from __future__ import annotations

import weakref

import cv2
import keras
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.utils.progress import progress

__all__ = ["batched_predict", "fit_to_input", "predict_images", "penultimate_features"]


_CALLS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_call(model):
    """One traced inference function per model (``model(x, training=False)`` in a ``tf.function``):
    the same numbers as ``model.predict`` without its per-call overhead (measured: ~1.6x the images
    per second on 2 CPU cores; `benchmarks/` and the book's benchmark table)."""
    import tensorflow as tf

    fn = _CALLS.get(model)
    if fn is None:

        def call(*xs):
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

        fn = tf.function(call, reduce_retracing=True)
        _CALLS[model] = fn
    return fn


def _batch(a: np.ndarray, start: int, size: int) -> np.ndarray:
    """Rows ``start:start+size`` of ``a`` as float32 (uint8 images are cast here, batch by batch)."""
    b = np.asarray(a[start : start + size])
    return b if b.dtype == np.float32 else b.astype(np.float32)


def batched_predict(model, inputs: list[np.ndarray], batch_size: int, desc: str, show: bool) -> list[np.ndarray]:
    """Run ``model`` over ``inputs`` (one array per model input, same length) in batches of
    ``batch_size``; returns one array per model output."""
    n = len(inputs[0])
    fn = _compiled_call(model)
    outs: list[np.ndarray] | None = None  # filled in place: no list of batches beside a concatenated copy
    for s in progress(range(0, n, batch_size), total=-(-n // batch_size), desc=desc, unit="batch", disable=not show):
        r = fn(*[_batch(a, s, batch_size) for a in inputs])
        got = [np.asarray(t) for t in (r if isinstance(r, (list, tuple)) else [r])]
        if outs is None:
            outs = [np.empty((n, *g.shape[1:]), g.dtype) for g in got]
        for o, g in zip(outs, got):
            o[s : s + len(g)] = g
    if outs is None:
        raise ValueError("batched_predict needs at least one input row")
    return outs


def fit_to_input(model, images: np.ndarray) -> np.ndarray:
    """``images (N, H, W, C)`` resized to the model's input side when the model has a fixed one that
    differs, else unchanged. An ensemble member trained at its backbone's native size (EfficientNet-Lite1:
    240 px, Lite2: 260 px) is then fed the same letterboxed images as the others (area averaging when
    shrinking, bilinear when enlarging; the Kaggle copy here is 224 px, so a larger side adds no detail)."""
    images = np.asarray(images)
    h, w = model.inputs[0].shape[1:3] if model.inputs else (None, None)
    if images.ndim != 4 or h is None or w is None or images.shape[1:3] == (h, w) or not len(images):
        return images
    interp = cv2.INTER_AREA if h < images.shape[1] else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(im, (w, h), interpolation=interp) for im in images])
    return out.reshape(len(images), h, w, -1)  # a single channel keeps its axis


def predict_images(model, images: np.ndarray, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Class probabilities ``(N, 4)`` for uint8 images ``(N, S, S, 3)`` (resized to the model's input
    side first when it differs: `fit_to_input`)."""
    if len(images) == 0:
        return np.zeros((0, len(CLASSES)), np.float32)
    x = fit_to_input(model, images)  # uint8 stays uint8 until each batch (`batched_predict`)
    return batched_predict(model, [x], batch_size, "predicting", show_progress)[0]


def penultimate_features(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The input of the ``predictions`` layer (after pooling/modules/dropout) for uint8 images."""

    extractor = keras.Model(model.inputs, model.get_layer("predictions").input)
    return predict_images(extractor, images, batch_size)
