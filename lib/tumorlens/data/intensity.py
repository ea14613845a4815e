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

__all__ = ["RandomIntensity", "RandomConvIntensity"]


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


@keras.saving.register_keras_serializable(package="tumorlens")
class RandomConvIntensity(keras.layers.Layer):
    """Global intensity non-linear augmentation (GIN; Ouyang et al., arXiv 2111.12525): a shallow network
    of random 3x3 convolutions remaps each image's gray levels, so that no contrast -- no sequence --
    can stand in for the class. Identity at inference.

    Per image, with probability ``p``: the gray image goes through ``depth`` random convolutions (``width``
    channels, weights ``~ N(0, 1)`` drawn per image, LeakyReLU between), the result is rescaled to the
    image's own mean and spread inside the head, mixed with the image by ``alpha ~ U(0, 1)``, and the
    background (the darkest pixels) stays black. Grey images stay grey (one value in every channel).

    Args:
        p: probability of remapping an image (in [0, 1]).
        width: channels of the hidden convolutions (>= 1).
        depth: number of convolutions (>= 2).
        seed: makes the draws reproducible.

    Shapes: ``(B, H, W, C)`` float 0..255 -> ``(B, H, W, C)``.
    """

    def __init__(self, p: float = 0.5, width: int = 4, depth: int = 3, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1]; received p={p!r}")
        for name, v, lo in (("width", width, 1), ("depth", depth, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; received {name}={v!r}")
        self.p, self.width, self.depth, self.seed = float(p), int(width), int(depth), seed
        self.generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"RandomConvIntensity expects (B, H, W, C) images; received shape {tuple(input_shape)}")
        super().build(input_shape)

    def _conv(self, x, cin: int, cout: int):
        """A 3x3 convolution with its own random kernel per image: patches (B, H, W, 9 cin) times
        kernels (B, 9 cin, cout)."""
        b = ops.shape(x)[0]
        patches = ops.image.extract_patches(x, size=3, strides=1, padding="same")
        k = keras.random.normal((b, 9 * cin, cout), seed=self.generator) / (3.0 * cin**0.5)
        return ops.einsum("bhwk,bko->bhwo", patches, k)

    def call(self, x, training=True):
        if not training or not self.p:
            return x
        x = ops.convert_to_tensor(x, "float32")
        b = ops.shape(x)[0]
        gray = ops.mean(x, axis=-1, keepdims=True) / 255.0
        head = ops.cast(gray > 0.04, "float32")
        h = gray
        channels = [1] + [self.width] * (self.depth - 1) + [1]
        for i in range(self.depth):
            h = self._conv(h, channels[i], channels[i + 1])
            if i < self.depth - 1:
                h = ops.leaky_relu(h, negative_slope=0.2)
        n = ops.sum(head, axis=(1, 2, 3), keepdims=True) + 1.0

        def stats(a):
            mean = ops.sum(a * head, axis=(1, 2, 3), keepdims=True) / n
            sd = ops.sqrt(ops.sum(((a - mean) * head) ** 2, axis=(1, 2, 3), keepdims=True) / n + 1e-8)
            return mean, sd

        m0, s0 = stats(gray)
        m1, s1 = stats(h)
        remapped = ops.clip((h - m1) / s1 * s0 + m0, 0.0, 1.0)
        alpha = keras.random.uniform((b, 1, 1, 1), seed=self.generator)
        mixed = alpha * remapped + (1.0 - alpha) * gray
        on = ops.cast(keras.random.uniform((b, 1, 1, 1), seed=self.generator) < self.p, "float32")
        out = head * mixed + (1.0 - head) * gray
        y = on * out + (1.0 - on) * gray
        # grey in, grey out; a colour image keeps its colour where it was not remapped
        y = ops.repeat(y, ops.shape(x)[-1], axis=-1) * 255.0
        return on * y + (1.0 - on) * x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "p": self.p, "width": self.width, "depth": self.depth, "seed": self.seed}
