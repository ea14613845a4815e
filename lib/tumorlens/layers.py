"""Small generic Keras layers used by the model builders (registered, serialisable)."""

from __future__ import annotations

import keras

from tumorlens.data import NORMALISATIONS, normalise

__all__ = ["Preprocess"]


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
