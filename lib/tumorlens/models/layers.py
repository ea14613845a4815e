"""Pixel normalisation, the one place that knows each backbone's pixel range, and the in-model layer for it."""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["NORMALISATIONS", "normalise", "Preprocess"]


# normalisation and augmentation (the only places that know about pixel ranges)
#: How each backbone expects pixels (inputs are float 0..255 RGB):
#:   raw    unchanged 0..255 (EfficientNet-B0/Lite0 in Keras rescale inside the model)
#:   tf     scaled to [-1, 1] (MobileNetV2)
#:   caffe  RGB->BGR and ImageNet mean subtracted (VGG16)
#:   unit   scaled to [0, 1] (the ViT, trained from scratch)
NORMALISATIONS = ("raw", "tf", "caffe", "unit")


_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def normalise(x, mode: str):
    """Apply a backbone's pixel normalisation to float RGB ``(..., 3)`` in 0..255 (NumPy or tensor)."""
    if mode == "raw":
        return x
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "unit":
        return x / 255.0
    if mode == "caffe":
        bgr = x[..., ::-1]
        return bgr - np.asarray(_CAFFE_MEAN_BGR, dtype="float32")
    raise ValueError(f"mode must be one of {NORMALISATIONS}; got {mode!r}")


@keras.saving.register_keras_serializable(package="tumorlens")
class Preprocess(keras.layers.Layer):
    """A backbone's pixel normalisation inside the model, so models take raw images.

    Input: float RGB in 0..255, ``(B, H, W, 3)``. Output: the same shape, normalised by ``mode``
    (see `tumorlens.data.normalise`: ``raw``, ``tf``, ``caffe`` or ``unit``).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMALISATIONS:
            raise ValueError(f"mode must be one of {NORMALISATIONS}; received mode={mode!r}")
        self.mode = mode

    def call(self, inputs):
        return normalise(keras.ops.cast(inputs, self.compute_dtype), self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
