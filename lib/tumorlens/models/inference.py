"""Running a trained classifier: class probabilities and penultimate features, in chunks."""

from __future__ import annotations

import weakref

import keras
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.utils.progress import progress

__all__ = ["batched_predict", "predict_images", "penultimate_features"]


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


def batched_predict(model, inputs: list[np.ndarray], batch_size: int, desc: str, show: bool) -> list[np.ndarray]:
    """Run ``model`` over ``inputs`` (one array per model input, same length) in batches of
    ``batch_size``; returns one array per model output."""
    n = len(inputs[0])
    fn = _compiled_call(model)
    outs: list[list[np.ndarray]] = []
    for s in progress(range(0, n, batch_size), total=-(-n // batch_size), desc=desc, unit="batch", disable=not show):
        r = fn(*[np.asarray(a[s : s + batch_size]) for a in inputs])
        outs.append([np.asarray(t) for t in (r if isinstance(r, (list, tuple)) else [r])])
    if not outs:
        raise ValueError("batched_predict needs at least one input row")
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def predict_images(model, images: np.ndarray, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
    """Class probabilities ``(N, 4)`` for uint8 images ``(N, S, S, 3)``."""
    if len(images) == 0:
        return np.zeros((0, len(CLASSES)), np.float32)
    return batched_predict(model, [images.astype("float32")], batch_size, "predicting", show_progress)[0]


def penultimate_features(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The input of the ``predictions`` layer (after pooling/modules/dropout) for uint8 images."""

    extractor = keras.Model(model.inputs, model.get_layer("predictions").input)
    return predict_images(extractor, images, batch_size)
