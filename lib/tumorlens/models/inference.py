"""Running a trained classifier: class probabilities and penultimate features, in chunks."""

from __future__ import annotations

import keras
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.utils.progress import progress

__all__ = ["batched_predict", "predict_images", "penultimate_features"]


def batched_predict(model, inputs: list[np.ndarray], batch_size: int, desc: str, show: bool) -> list[np.ndarray]:
    n = len(inputs[0])
    chunk = max(batch_size, 256)
    outs: list[list[np.ndarray]] = []
    for s in progress(range(0, n, chunk), total=-(-n // chunk), desc=desc, unit="chunk", disable=not show):
        part = [a[s : s + chunk] for a in inputs]
        r = model.predict(part if len(part) > 1 else part[0], batch_size=batch_size, verbose=0)
        outs.append(r if isinstance(r, list) else [r])
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
