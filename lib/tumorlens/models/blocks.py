"""The paper's three light modules — MAB, ResPath, SBR — and the SE and CBAM baselines, as Keras layers.

All follow the Keras layer contract (sublayers and weights created in ``build``, ``call``,
``get_config``), are registered serialisable under the ``tumorlens`` package and survive a
``.keras`` save/load round trip. Each module that adds a branch to its input starts as the identity
(a learnable scale initialised at zero), so inserting it does not disturb a pretrained backbone.

Shapes (channels last): ``B`` batch, ``H x W`` the feature grid, ``C`` channels.

=================== =============================== ==========================
layer               input                           output
=================== =============================== ==========================
`MixedAttention`    ``(B, H, W, C)``                ``(B, H, W, C)``
`ResidualPathHead`  ``(B, H, W, C)``                ``(B, C)`` (replaces pooling)
`EdgeMap`           ``(B, H0, W0, 3)`` raw image    ``(B, H, W, 2)``
`BoundaryRefinement` ``[(B, H, W, C), (B, H, W, 2)]`` ``(B, H, W, C)``
`SqueezeExcite`     ``(B, H, W, C)``                ``(B, H, W, C)``
`CBAM`              ``(B, H, W, C)``                ``(B, H, W, C)``
`LocalPooling`      ``(B, H, W, C)``                ``(B, C)`` (replaces pooling)
=================== =============================== ==========================
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "MixedAttention",
    "ResidualPathHead",
    "EdgeMap",
    "BoundaryRefinement",
    "SqueezeExcite",
    "CBAM",
    "LocalPooling",
]


def _check_int(name: str, value, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; received {name}={value!r}")
    return int(value)


def _check_rank4(layer: str, input_shape) -> int:
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(
            f"{layer} expects a feature map (B, H, W, C) with known C; received shape {tuple(input_shape)}"
        )
    return int(input_shape[-1])


@keras.saving.register_keras_serializable(package="tumorlens")
class MixedAttention(keras.layers.Layer):
    """Mixed Attention Block (MAB): global spatial self-attention with a zero-initialised residual.

    Every position of the feature map attends to every other one. Queries, keys and values are 1x1
    convolutions to ``d = max(1, C // reduction)`` channels; the attended values are projected back
    to ``C`` by another 1x1 convolution and added to the input with a learnable scale ``gamma``
    (initialised at 0: the block starts as the identity)::

        A = softmax(Q K^T / sqrt(d))          # (B, HW, HW)
        y = x + gamma * W_o (A V)

    Args:
        reduction: channel reduction of the query/key/value projections (``d = C // reduction``).

    Input shape: ``(B, H, W, C)``. Output shape: ``(B, H, W, C)``.
    """

    def __init__(self, reduction: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.reduction = _check_int("reduction", reduction)

    def build(self, input_shape):
        c = _check_rank4("MixedAttention", input_shape)
        self.key_dim = max(1, c // self.reduction)
        self.query = keras.layers.Conv2D(self.key_dim, 1, name="query")
        self.key = keras.layers.Conv2D(self.key_dim, 1, name="key")
        self.value = keras.layers.Conv2D(self.key_dim, 1, name="value")
        self.output_proj = keras.layers.Conv2D(c, 1, name="output_proj")
        for lay in (self.query, self.key, self.value):
            lay.build(input_shape)
        self.output_proj.build((*input_shape[:-1], self.key_dim))
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def attention(self, inputs):
        """The attention weights ``(B, HW, HW)`` (for inspection)."""
        b, h, w = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        q = ops.reshape(self.query(inputs), (b, h * w, self.key_dim))
        k = ops.reshape(self.key(inputs), (b, h * w, self.key_dim))
        return ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) / math.sqrt(self.key_dim), axis=-1)

    def call(self, inputs):
        b, h, w = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        v = ops.reshape(self.value(inputs), (b, h * w, self.key_dim))
        o = ops.reshape(ops.matmul(self.attention(inputs), v), (b, h, w, self.key_dim))
        return inputs + self.gamma * self.output_proj(o)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="tumorlens")
class ResidualPathHead(keras.layers.Layer):
    """Residual Path Head (ResPath): pooling with an extra residual path beside the main one.

    The main path is global average pooling. The residual path takes the same last convolutional
    features by global max pooling through a bottleneck MLP (``C -> C // reduction -> C``, ReLU) whose
    last layer is zero-initialised, and adds it: the head starts as plain average pooling, and in
    fine-tuning the gradient reaches the features through two routes::

        y = GAP(x) + W2 relu(W1 GMP(x) + b1) + b2

    Args:
        reduction: bottleneck reduction of the residual path.

    Input shape: ``(B, H, W, C)``. Output shape: ``(B, C)``.
    """

    def __init__(self, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = _check_int("reduction", reduction)

    def build(self, input_shape):
        c = _check_rank4("ResidualPathHead", input_shape)
        hidden = max(1, c // self.reduction)
        self.squeeze = keras.layers.Dense(hidden, activation="relu", name="squeeze")
        self.expand = keras.layers.Dense(c, kernel_initializer="zeros", name="expand")
        self.squeeze.build((input_shape[0], c))
        self.expand.build((input_shape[0], hidden))

    def call(self, inputs):
        main = ops.mean(inputs, axis=(1, 2))
        return main + self.expand(self.squeeze(ops.max(inputs, axis=(1, 2))))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8.0
_LAPLACE = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32) / 4.0


@keras.saving.register_keras_serializable(package="tumorlens")
class EdgeMap(keras.layers.Layer):
    """Fixed edge features of the raw image at the feature grid (no trainable weights).

    The image is turned to gray, filtered by fixed Sobel (gradient magnitude) and Laplacian
    (absolute) kernels, each map scaled to [0, 1] by its per-image maximum, and resampled to
    ``grid`` by area averaging.

    Args:
        grid: ``(h, w)`` of the feature map the edges are fused with.

    Input shape: ``(B, H, W, 3)`` raw image (any range). Output shape: ``(B, h, w, 2)``.
    """

    def __init__(self, grid, **kwargs):
        super().__init__(**kwargs)
        grid = tuple(grid) if isinstance(grid, (list, tuple)) else (grid, grid)
        if len(grid) != 2:
            raise ValueError(f"grid must be (h, w); received grid={grid!r}")
        self.grid = tuple(_check_int("grid", int(g)) for g in grid)

    def call(self, inputs):
        gray = ops.mean(ops.cast(inputs, "float32"), axis=-1, keepdims=True)
        kx = ops.convert_to_tensor(_SOBEL_X[:, :, None, None])
        ky = ops.convert_to_tensor(_SOBEL_X.T[:, :, None, None].copy())
        kl = ops.convert_to_tensor(_LAPLACE[:, :, None, None])
        gx = ops.conv(gray, kx, padding="same")
        gy = ops.conv(gray, ky, padding="same")
        mag = ops.sqrt(gx * gx + gy * gy + 1e-12)
        lap = ops.abs(ops.conv(gray, kl, padding="same"))
        edges = ops.concatenate([mag, lap], axis=-1)
        edges = edges / (ops.max(edges, axis=(1, 2), keepdims=True) + 1e-6)
        return ops.image.resize(edges, self.grid, interpolation="area")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.grid, 2)

    def get_config(self):
        return {**super().get_config(), "grid": list(self.grid)}


@keras.saving.register_keras_serializable(package="tumorlens")
class BoundaryRefinement(keras.layers.Layer):
    """Spatial Boundary Refinement (SBR): edge-guided spatial gating of the activations.

    A ``kernel_size`` convolution over ``[mean_c(x), max_c(x), edges]`` gives a spatial gate
    ``g`` in (0, 1) that is high where activations and image edges agree — at tumour boundaries —
    and the activations are emphasised there, with a zero-initialised scale::

        g = sigmoid(conv([mean_c(x), max_c(x), E]))
        y = x * (1 + gamma * g)

    Args:
        kernel_size: side of the gating convolution.

    Inputs: ``[x (B, H, W, C), E (B, H, W, k)]`` with ``E`` from `EdgeMap`. Output: ``(B, H, W, C)``.
    """

    def __init__(self, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _check_int("kernel_size", kernel_size)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"BoundaryRefinement expects [features, edges]; received {input_shape!r}")
        x_shape, e_shape = input_shape
        _check_rank4("BoundaryRefinement", x_shape)
        if tuple(x_shape[1:3]) != tuple(e_shape[1:3]):
            raise ValueError(f"features and edges must share the grid; received {tuple(x_shape)} and {tuple(e_shape)}")
        self.gate = keras.layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="gate")
        self.gate.build((*x_shape[:3], 2 + int(e_shape[-1])))
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def gate_map(self, inputs):
        """The spatial gate ``(B, H, W, 1)`` (for inspection)."""
        x, e = inputs
        s = ops.concatenate(
            [ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True), ops.cast(e, x.dtype)], axis=-1
        )
        return self.gate(s)

    def call(self, inputs):
        x = inputs[0]
        return x * (1.0 + self.gamma * self.gate_map(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="tumorlens")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation (Hu et al., 2018), a baseline: ``y = x * sigmoid(W2 relu(W1 GAP(x)))``.

    Input shape: ``(B, H, W, C)``. Output shape: ``(B, H, W, C)``.
    """

    def __init__(self, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = _check_int("reduction", reduction)

    def build(self, input_shape):
        c = _check_rank4("SqueezeExcite", input_shape)
        hidden = max(1, c // self.reduction)
        self.squeeze = keras.layers.Dense(hidden, activation="relu", name="squeeze")
        self.excite = keras.layers.Dense(c, activation="sigmoid", name="excite")
        self.squeeze.build((input_shape[0], c))
        self.excite.build((input_shape[0], hidden))

    def call(self, inputs):
        s = self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2))))
        return inputs * s[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="tumorlens")
class CBAM(keras.layers.Layer):
    """Convolutional Block Attention Module (Woo et al., 2018), a baseline.

    Channel attention (a shared MLP over average- and max-pooled features) followed by spatial
    attention (a ``kernel_size`` convolution over channel-wise mean and max).

    Input shape: ``(B, H, W, C)``. Output shape: ``(B, H, W, C)``.
    """

    def __init__(self, reduction: int = 16, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.reduction = _check_int("reduction", reduction)
        self.kernel_size = _check_int("kernel_size", kernel_size)

    def build(self, input_shape):
        c = _check_rank4("CBAM", input_shape)
        hidden = max(1, c // self.reduction)
        self.mlp_hidden = keras.layers.Dense(hidden, activation="relu", name="mlp_hidden")
        self.mlp_out = keras.layers.Dense(c, name="mlp_out")
        self.mlp_hidden.build((input_shape[0], c))
        self.mlp_out.build((input_shape[0], hidden))
        self.spatial = keras.layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="spatial")
        self.spatial.build((*input_shape[:3], 2))

    def call(self, inputs):
        avg = self.mlp_out(self.mlp_hidden(ops.mean(inputs, axis=(1, 2))))
        mx = self.mlp_out(self.mlp_hidden(ops.max(inputs, axis=(1, 2))))
        x = inputs * ops.sigmoid(avg + mx)[:, None, None, :]
        s = ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)
        return x * self.spatial(s)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="tumorlens")
class LocalPooling(keras.layers.Layer):
    """Pooling that lets a few locations decide (multiple-instance style), in place of global average pooling.

    Global average pooling lets evidence spread over the whole slice count as much as a small lesion;
    these poolings weight each channel's strongest locations, so a classifier trained through them
    has a reason to put its class evidence where the lesion is (Pinheiro & Collobert, 2015; Durand
    et al., 2017, WILDCAT)::

        lse:   y_c = max_i x_ic + log(mean_i exp(r (x_ic - max_i x_ic))) / r
               (r -> 0: the mean; r -> inf: the max)
        topk:  y_c = mean of the ceil(k * H * W) largest x_ic
               (k = 1: the mean; k -> 0: the max)

    Args:
        mode: ``lse`` or ``topk``.
        r: sharpness of ``lse`` (> 0).
        k: share of the locations ``topk`` averages, in (0, 1].
    """

    MODES = ("lse", "topk")

    def __init__(self, mode: str = "lse", r: float = 5.0, k: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}; received mode={mode!r}")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
            raise ValueError(f"r must be a number > 0; received r={r!r}")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 1:
            raise ValueError(f"k must be a number in (0, 1]; received k={k!r}")
        self.mode, self.r, self.k = mode, float(r), float(k)
        self.n_top = None

    def build(self, input_shape):
        _check_rank4("LocalPooling", input_shape)
        h, w = input_shape[1], input_shape[2]
        if self.mode == "topk" and (h is None or w is None):
            raise ValueError(f"LocalPooling(topk) needs a known grid; received shape {tuple(input_shape)}")
        if self.mode == "topk":
            self.n_top = max(1, math.ceil(self.k * h * w))
        super().build(input_shape)

    def call(self, x):
        if self.mode == "lse":
            m = ops.max(x, axis=(1, 2), keepdims=True)
            return ops.squeeze(m, axis=(1, 2)) + ops.log(ops.mean(ops.exp(self.r * (x - m)), axis=(1, 2))) / self.r
        c = ops.shape(x)[-1]
        flat = ops.transpose(ops.reshape(x, (ops.shape(x)[0], -1, c)), (0, 2, 1))  # (B, C, HW)
        top, _ = ops.top_k(flat, self.n_top, sorted=False)
        return ops.mean(top, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "r": self.r, "k": self.k}
