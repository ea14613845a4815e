"""Grad-CAM and Grad-CAM++: where in the image the classifier's evidence for a class lies.

Compute and post-process are separate (as in MONAI's ``class_activation_maps``):

- `cam_maps` returns the raw, non-negative maps at the target layer's resolution ``(N, h, w)``;
- `upsample_normalise` resizes them to the input resolution and scales each to [0, 1];
- `grad_cam` does both — a pure function of (model, images, target layer, class index) returning
  ``(N, H, W)`` float32 maps in [0, 1]. Rendering (overlays) lives in `tumorlens.report`.

The class score differentiated is the **logit** (the ``predictions`` layer before its softmax), so
gradients do not vanish when the model is confident. Grad-CAM weights each channel by the spatial
mean of its gradient; Grad-CAM++ (Chattopadhay et al., 2018) by a positive-gradient weighting with
per-pixel coefficients — only the channel weighting differs.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import cv2
import numpy as np

__all__ = ["cam_maps", "upsample_normalise", "grad_cam", "predict_and_explain"]

_GRAD_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _grad_fn(model, target_layer: str):
    """A compiled function ``(images, class_idx or -1) -> (fmap, grads, probs)`` per model and layer."""
    import keras
    import tensorflow as tf

    per_model = _GRAD_MODELS.setdefault(model, {})
    if target_layer not in per_model:
        try:
            target = model.get_layer(target_layer)
        except ValueError:
            raise ValueError(f"target_layer {target_layer!r} is not a layer of model {model.name!r}") from None
        head = model.get_layer("predictions")
        gm = keras.Model(model.inputs, [target.output, head.input, model.output])
        shape = (None, *model.inputs[0].shape[1:])

        @tf.function(
            input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec((None,), tf.int32)], reduce_retracing=True
        )
        def fn(x, cls):
            with tf.GradientTape() as tape:
                fmap, head_in, probs = gm(x, training=False)
                tape.watch(fmap)
                logits = tf.matmul(head_in, head.kernel) + head.bias
                chosen = tf.where(cls < 0, tf.argmax(probs, axis=-1, output_type=tf.int32), cls)
                score = tf.gather(logits, chosen, axis=1, batch_dims=1)
            grads = tape.gradient(score, fmap)
            if grads is None:
                raise ValueError(f"the class score does not depend on layer {target_layer!r}")
            return fmap, grads, probs

        per_model[target_layer] = fn
    return per_model[target_layer]


def cam_maps(
    model,
    images: np.ndarray,
    target_layer: str,
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw class activation maps at the target layer's resolution.

    Args:
        model: a classifier from `tumorlens.models.build_classifier` (raw 0..255 inputs, a ``predictions``
            Dense softmax layer).
        images: ``(N, H, W, 3)`` raw images (uint8 or float 0..255).
        target_layer: layer name, usually ``get_spec(backbone).target_layer``.
        class_index: the class to explain: None (each image's predicted class), one int for all,
            or one per image.
        method: ``gradcam`` or ``gradcam++``.

    Returns:
        ``(maps, probs)``: maps ``(N, h, w)`` float32 >= 0 (not normalised), probs ``(N, K)``.
    """
    import tensorflow as tf

    if method not in ("gradcam", "gradcam++"):
        raise ValueError(f"method must be 'gradcam' or 'gradcam++'; received method={method!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3); received shape {images.shape}")
    n = len(images)
    if class_index is None or np.isscalar(class_index):
        idx = None if class_index is None else np.full(n, int(class_index))
    else:
        idx = np.asarray(class_index, dtype=int)
        if idx.shape != (n,):
            raise ValueError(f"class_index must be None, an int or one per image ({n}); received {len(idx)}")
    fn = _grad_fn(model, target_layer)
    maps, probs_all = [], []
    for s in range(0, n, batch_size):
        x = tf.convert_to_tensor(images[s : s + batch_size], dtype=tf.float32)
        cls = np.full(len(x), -1, np.int32) if idx is None else idx[s : s + batch_size].astype(np.int32)
        fmap, grads, probs = fn(x, tf.constant(cls))
        a, g = fmap.numpy().astype(np.float64), grads.numpy().astype(np.float64)
        if method == "gradcam":
            weights = g.mean(axis=(1, 2))
        else:
            g2, g3 = g**2, g**3
            denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
            alpha = np.where(denom != 0, g2 / np.where(denom != 0, denom, 1), 0)
            weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
        cam = np.maximum(np.einsum("bhwc,bc->bhw", a, weights), 0)
        maps.append(cam.astype(np.float32))
        probs_all.append(probs.numpy())
    return np.concatenate(maps), np.concatenate(probs_all)


def upsample_normalise(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(N, h, w)`` maps to ``size = (H, W)`` (bilinear) and scale each to [0, 1].

    A flat map (no variation) becomes all zeros: it carries no localisation.
    """
    out = np.empty((len(maps), *size), np.float32)
    for i, m in enumerate(maps):
        up = cv2.resize(np.asarray(m, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        lo, hi = float(up.min()), float(up.max())
        out[i] = (up - lo) / (hi - lo) if hi - lo > 1e-12 * max(1.0, abs(hi)) else 0.0
    return out


def grad_cam(
    model,
    images: np.ndarray,
    target_layer: str,
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM (or Grad-CAM++) maps ``(N, H, W)`` in [0, 1] at the input resolution (see `cam_maps`)."""
    maps, _ = cam_maps(model, images, target_layer, class_index, method=method, batch_size=batch_size)
    return upsample_normalise(maps, tuple(np.asarray(images).shape[1:3]))


def predict_and_explain(
    model, images: np.ndarray, target_layer: str, *, method: str = "gradcam", batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), maps (N, H, W))`` for the predicted classes, in one forward/backward pass."""
    maps, probs = cam_maps(model, images, target_layer, None, method=method, batch_size=batch_size)
    return probs, upsample_normalise(maps, tuple(np.asarray(images).shape[1:3]))
