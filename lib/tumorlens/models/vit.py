"""A minimal Vision Transformer, trained from scratch (the paper's RQ5 baseline).

Patch embedding (a strided convolution), a learned position embedding, ``depth`` pre-norm encoder
blocks (multi-head self-attention and a GELU MLP, each with a residual) and a final LayerNorm.
The encoder returns its tokens **as a grid** ``(B, H/p, W/p, dim)`` — the layer ``encoder_grid`` —
so the classifier head (global pooling, dropout, softmax) and Grad-CAM treat it like a CNN's last
feature map. Default size: patch 16, dim 128, depth 4, 4 heads (about 0.8M parameters; minutes per
epoch at 224 px on 2 CPU cores).
"""

from __future__ import annotations

import keras
from keras import ops

from tumorlens.models.layers import Preprocess

__all__ = ["PatchEmbedding", "PositionEmbedding", "TransformerBlock", "build_vit_encoder"]


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; received {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="tumorlens")
class PatchEmbedding(keras.layers.Layer):
    """Non-overlapping ``patch_size`` patches projected to ``dim``.

    Input shape: ``(B, H, W, C)`` with H, W multiples of ``patch_size``. Output: ``(B, H/p * W/p, dim)``.
    """

    def __init__(self, patch_size: int = 16, dim: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.patch_size, self.dim = _positive("patch_size", patch_size), _positive("dim", dim)

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None or h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"image sides must be multiples of patch_size={self.patch_size}; "
                f"received input shape {tuple(input_shape)}"
            )
        self.grid = (h // self.patch_size, w // self.patch_size)
        self.proj = keras.layers.Conv2D(self.dim, self.patch_size, strides=self.patch_size, name="proj")
        self.proj.build(input_shape)

    def call(self, inputs):
        x = self.proj(inputs)
        return ops.reshape(x, (ops.shape(x)[0], self.grid[0] * self.grid[1], self.dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], (input_shape[1] // self.patch_size) * (input_shape[2] // self.patch_size), self.dim)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "dim": self.dim}


@keras.saving.register_keras_serializable(package="tumorlens")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per token position. Input and output: ``(B, N, dim)``."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding", shape=tuple(input_shape[1:]), initializer=keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def call(self, inputs):
        return inputs + self.embedding[None]

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tumorlens")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm encoder block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``.

    Input and output shape: ``(B, N, dim)``.
    """

    def __init__(self, heads: int = 4, mlp_dim: int = 256, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.mlp_dim = _positive("heads", heads), _positive("mlp_dim", mlp_dim)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); received dropout={dropout!r}")
        self.dropout = float(dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.heads:
            raise ValueError(f"token dim {dim} is not divisible by heads={self.heads}")
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = keras.layers.MultiHeadAttention(self.heads, dim // self.heads, dropout=self.dropout, name="attn")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = keras.layers.Dense(self.mlp_dim, activation="gelu", name="fc1")
        self.fc2 = keras.layers.Dense(dim, name="fc2")
        self.drop = keras.layers.Dropout(self.dropout)
        self.norm1.build(input_shape)
        self.attn.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], self.mlp_dim))

    def call(self, inputs, training=None):
        y = self.norm1(inputs)
        x = inputs + self.drop(self.attn(y, y, training=training), training=training)
        y = self.fc2(self.drop(self.fc1(self.norm2(x)), training=training))
        return x + self.drop(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "mlp_dim": self.mlp_dim, "dropout": self.dropout}


def build_vit_encoder(
    inputs,
    *,
    patch_size: int = 16,
    dim: int = 128,
    depth: int = 4,
    heads: int = 4,
    mlp_dim: int = 256,
    dropout: float = 0.1,
):
    """The ViT encoder on raw images ``inputs`` (float 0..255): returns a model to ``encoder_grid``
    ``(B, H/patch, W/patch, dim)``."""

    _positive("depth", depth)
    x = Preprocess("unit", name="preprocess")(inputs)
    x = PatchEmbedding(patch_size, dim, name="patch_embedding")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(depth):
        x = TransformerBlock(heads, mlp_dim, dropout, name=f"encoder_block_{i + 1}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)
    side_h, side_w = int(inputs.shape[1]) // patch_size, int(inputs.shape[2]) // patch_size
    x = keras.layers.Reshape((side_h, side_w, dim), name="encoder_grid")(x)
    return keras.Model(inputs, x, name="vit")
