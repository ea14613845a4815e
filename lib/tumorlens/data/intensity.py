"""Random intensity remapping of MRI slices, for training only: what another scanner, sequence or
release does to the same anatomy (the external set's images are the same kinds of slices with
remapped intensities).

    aug = RandomIntensity(gamma=0.4, bias_field=0.3, noise=0.02, invert=0.5, seed=1)
    y = aug(x, training=True)        # x: float (B, H, W, C) in 0..255 -> same shape, same range

Per image, independently:

- **invert** (first): with probability ``invert``, the intensities inside the head are inverted,
  ``y = 255 - x`` rescaled to the image's own mean brightness there and faded to 0 over the darkest
  intensities (so the black background stays black): a T2- or
  FLAIR-weighted slice (bright fluid) takes a T1-like contrast (dark fluid) and the other way round, so
  the sequence cannot stand in for the class;
- **gamma**: ``y = 255 (x / 255) ** g`` with ``log g ~ U(-gamma, gamma)`` (a monotone contrast remap);
- **bias field**: ``y = x * exp(f)``, ``f`` a random quadratic surface over the image (coefficients
  ``~ U(-bias_field, bias_field)`` on ``u, v, u^2, v^2, uv`` with ``u, v`` in [-1, 1]): the slow
  multiplicative shading of a receive coil;
- **noise**: Gaussian noise of standard deviation ``noise * 255`` (one value per pixel, the same in
  every channel: grey images stay grey).

Black background stays black under inversion, gamma and the bias field; the output is
clipped to 0..255. With every strength 0 the layer is the identity.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["RandomIntensity"]


@keras.saving.register_keras_serializable(package="tumorlens")
class RandomIntensity(keras.layers.Layer):
    """Random gamma, bias field and noise (see the module docstring); identity at inference.

    Args:
        gamma: maximum ``|log g|`` of the gamma exponent (>= 0).
        bias_field: maximum coefficient of the quadratic log-field (>= 0).
        noise: standard deviation of the added noise as a fraction of 255 (in [0, 1)).
        invert: probability of inverting an image's intensities inside the head (in [0, 1]).
        seed: makes the draws reproducible.

    Shapes: ``(B, H, W, C)`` -> ``(B, H, W, C)``.
    """

    def __init__(
        self,
        gamma: float = 0.0,
        bias_field: float = 0.0,
        noise: float = 0.0,
        seed=None,
        invert: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, v, hi in (("gamma", gamma, 3.0), ("bias_field", bias_field, 3.0), ("noise", noise, 1.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < hi:
                raise ValueError(f"{name} must be a number in [0, {hi}); received {name}={v!r}")
        if isinstance(invert, bool) or not isinstance(invert, (int, float)) or not 0 <= invert <= 1:
            raise ValueError(f"invert must be a probability in [0, 1]; received invert={invert!r}")
        self.gamma, self.bias_field, self.noise = float(gamma), float(bias_field), float(noise)
        self.invert = float(invert)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"RandomIntensity expects (B, H, W, C) images; received shape {tuple(input_shape)}")
        super().build(input_shape)

    def call(self, x, training=True):
        if not training or not (self.gamma or self.bias_field or self.noise or self.invert):
            return x
        x = ops.convert_to_tensor(x, "float32")
        shape = ops.shape(x)
        b, h, w = shape[0], shape[1], shape[2]
        y = ops.clip(x / 255.0, 0.0, 1.0)
        if self.invert:
            flip = ops.cast(keras.random.uniform((b, 1, 1, 1), seed=self.generator) < self.invert, "float32")
            # inside the head: 1 - y, scaled to the image's own mean brightness there; the darkest
            # intensities (background and its noise) fade to 0 so that the background stays black
            inside = ops.clip((ops.mean(y, axis=-1, keepdims=True) - 0.04) / 0.1, 0.0, 1.0)
            inv = inside * (1.0 - y)
            scale = ops.sum(inside * y, axis=(1, 2, 3), keepdims=True) / (
                ops.sum(inv, axis=(1, 2, 3), keepdims=True) + 1e-6
            )
            y = flip * ops.clip(inv * scale, 0.0, 1.0) + (1.0 - flip) * y
        if self.gamma:
            log_g = keras.random.uniform((b, 1, 1, 1), -self.gamma, self.gamma, seed=self.generator)
            y = ops.power(ops.maximum(y, 1e-6), ops.exp(log_g)) * ops.cast(y > 0, "float32")
        if self.bias_field:
            v = ops.reshape(ops.linspace(-1.0, 1.0, h), (1, -1, 1, 1))
            u = ops.reshape(ops.linspace(-1.0, 1.0, w), (1, 1, -1, 1))
            c = keras.random.uniform((5, b, 1, 1, 1), -self.bias_field, self.bias_field, seed=self.generator)
            field = c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v
            y = y * ops.exp(field)
        if self.noise:
            y = y + keras.random.normal((b, h, w, 1), stddev=self.noise, seed=self.generator)
        return ops.clip(y, 0.0, 1.0) * 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "bias_field": self.bias_field,
            "noise": self.noise,
            "invert": self.invert,
            "seed": self.seed,
        }
