"""Class activation maps: where in the image the classifier's evidence for a class lies.

Three methods, one contract — a pure function of (model, images, layers, class) returning maps:

- **Grad-CAM** (Selvaraju et al., 2017; the paper's row): each channel of a layer weighted by the
  spatial *mean* of its gradient, summed, ReLU. On a 7x7 top layer the map is coarse, and on a finer
  layer the channel-averaged gradient washes the location out.
- **Grad-CAM++** (Chattopadhay et al., 2018): the channel weight is a positive-gradient weighting
  with per-pixel coefficients; otherwise as Grad-CAM.
- **LayerCAM** (Jiang et al., 2021): each *location* weighted by its own positive gradient,
  ``ReLU(sum_c ReLU(dS/dA_c) * A_c)``, so a stride-16 or stride-8 layer keeps its resolution.

**Layers.** ``layers`` is one layer name or several: the maps of several layers are each scaled to
[0, 1], resized to the finest layer's grid and averaged (multi-layer fusion). Each backbone names
its layers at stride 32 (``top``), 16 and 8 (`tumorlens.models.backbones.BackboneSpec.cam_layers`);
`resolve_layers` turns a setting (``top``, ``stride16``, ``stride8``, ``fusion``) into names.

**Flip averaging.** ``flip=True`` also explains the left-right mirrored image (same class) and
averages the mirrored-back map with the original one.

Compute and post-process are separate (as in MONAI's ``class_activation_maps``):

- `cam_maps` returns raw, non-negative maps at the (finest) layer's resolution ``(N, h, w)``;
- `upsample_normalise` resizes them to the input resolution and scales each to [0, 1];
- `class_activation_maps` does both, ``(N, H, W)`` float32 in [0, 1]; `grad_cam` is the same with
  ``method="gradcam"`` as the default. Rendering (overlays) lives in `tumorlens.explain.gallery`.

The class score differentiated is the **logit** (the ``predictions`` layer before its softmax), so
gradients do not vanish when the model is confident.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from tumorlens.config import CAM_LAYER_SETS, CAM_METHODS
from tumorlens.models.backbones import get_spec

__all__ = [
    "METHODS",
    "LAYER_SETS",
    "CamSetting",
    "resolve_layers",
    "cam_maps",
    "cam_maps_many",
    "upsample_normalise",
    "class_activation_maps",
    "grad_cam",
    "predict_and_explain",
]

#: The map methods `cam_maps` computes.
METHODS: tuple[str, ...] = CAM_METHODS
#: Which of a backbone's CAM layers a setting uses (see `resolve_layers`).
LAYER_SETS: tuple[str, ...] = CAM_LAYER_SETS


@dataclass(frozen=True)
class CamSetting:
    """One way to make a map: method, layer set, flip averaging. Its `name` reads
    ``method@layers[+flip]`` (e.g. ``gradcam@top``, the paper's, or ``layercam@fusion+flip``)."""

    method: str = "gradcam"
    layers: str = "top"
    flip: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; received method={self.method!r}")
        if self.layers not in LAYER_SETS:
            raise ValueError(f"layers must be one of {', '.join(LAYER_SETS)}; received layers={self.layers!r}")

    @property
    def name(self) -> str:
        return f"{self.method}@{self.layers}" + ("+flip" if self.flip else "")

    @classmethod
    def parse(cls, name: str) -> "CamSetting":
        """``"layercam@fusion+flip"`` -> CamSetting("layercam", "fusion", True); ``"gradcam"`` means ``gradcam@top``."""
        flip = name.endswith("+flip")
        method, _, layers = name.removesuffix("+flip").partition("@")
        return cls(method, layers or "top", flip)

    @classmethod
    def from_config(cls, section) -> "CamSetting":
        """The setting of a config's ``segment`` section (``cam``, ``cam_layers``, ``flip``)."""
        return cls(section.cam, section.cam_layers, section.flip)

    def layer_names(self, backbone: str) -> tuple[str, ...]:
        return resolve_layers(backbone, self.layers)


_GRAD_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def resolve_layers(backbone: str, which: str) -> tuple[str, ...]:
    """Layer names for a setting: ``top`` (the stride-32 map, Grad-CAM's usual layer), ``stride16``,
    ``stride8``, or ``fusion`` (stride 16 and 8 together). A backbone without a finer layer (the ViT)
    uses its one map for every setting."""
    if which not in LAYER_SETS:
        raise ValueError(f"layers must be one of {', '.join(LAYER_SETS)}; received {which!r}")
    spec = get_spec(backbone)
    by_stride = {32: spec.target_layer, **spec.cam_layers}
    if which == "top":
        return (spec.target_layer,)
    if which == "fusion":
        names = tuple(dict.fromkeys(by_stride.get(s, spec.target_layer) for s in (16, 8)))
        return names
    return (by_stride.get(int(which.removeprefix("stride")), spec.target_layer),)


def _grad_fn(model, layers: tuple[str, ...]):
    """A compiled function ``(images, class_idx or -1) -> (fmaps, grads, probs)`` per model and layers."""
    import keras
    import tensorflow as tf

    per_model = _GRAD_MODELS.setdefault(model, {})
    if layers not in per_model:
        targets = []
        for name in layers:
            try:
                targets.append(model.get_layer(name).output)
            except ValueError:
                raise ValueError(f"target layer {name!r} is not a layer of model {model.name!r}") from None
        head = model.get_layer("predictions")
        gm = keras.Model(model.inputs, [targets, head.input, model.output])
        shape = (None, *model.inputs[0].shape[1:])

        @tf.function(
            input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec((None,), tf.int32)], reduce_retracing=True
        )
        def fn(x, cls):
            with tf.GradientTape() as tape:
                fmaps, head_in, probs = gm(x, training=False)
                tape.watch(fmaps)
                logits = tf.matmul(head_in, head.kernel) + head.bias
                chosen = tf.where(cls < 0, tf.argmax(probs, axis=-1, output_type=tf.int32), cls)
                score = tf.gather(logits, chosen, axis=1, batch_dims=1)
            grads = tape.gradient(score, fmaps)
            for name, g in zip(layers, grads):
                if g is None:
                    raise ValueError(f"the class score does not depend on layer {name!r}")
            return fmaps, grads, probs

        per_model[layers] = fn
    return per_model[layers]


def _combine(a: np.ndarray, g: np.ndarray, method: str) -> np.ndarray:
    """Activations ``a`` and gradients ``g`` ``(B, h, w, C)`` -> non-negative maps ``(B, h, w)``."""
    if method == "layercam":
        return np.maximum((np.maximum(g, 0) * a).sum(axis=-1), 0)
    if method == "gradcam":
        weights = g.mean(axis=(1, 2))
    else:
        g2, g3 = g**2, g**3
        denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
        alpha = np.where(denom != 0, g2 / np.where(denom != 0, denom, 1), 0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("bhwc,bc->bhw", a, weights), 0)


def _scale01(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (all-zero maps stay zero)."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def _fuse(per_layer: list[np.ndarray]) -> np.ndarray:
    """One layer: its raw maps. Several: each scaled to [0, 1], resized to the finest grid, averaged."""
    if len(per_layer) == 1:
        return per_layer[0].astype(np.float32)
    h, w = max((m.shape[1:] for m in per_layer), key=lambda s: s[0] * s[1])
    out = np.zeros((len(per_layer[0]), h, w), np.float32)
    for maps in per_layer:
        maps = _scale01(maps)
        for i, m in enumerate(maps):
            out[i] += m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    return out / len(per_layer)


def _checked(images, class_index) -> tuple[np.ndarray, np.ndarray | None]:
    """``images`` as an ``(N, H, W, 3)`` array and ``class_index`` as None or one class per image."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3); received shape {images.shape}")
    n = len(images)
    if class_index is None or np.isscalar(class_index):
        return images, None if class_index is None else np.full(n, int(class_index))
    idx = np.asarray(class_index, dtype=int)
    if idx.shape != (n,):
        raise ValueError(f"class_index must be None, an int or one per image ({n}); received {len(idx)}")
    return images, idx


def cam_maps(
    model,
    images: np.ndarray,
    layers: str | Sequence[str],
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    flip: bool = False,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw class activation maps at the (finest) target layer's resolution.

    Args:
        model: a classifier from `tumorlens.models.build_classifier` (raw 0..255 inputs, a ``predictions``
            Dense softmax layer).
        images: ``(N, H, W, 3)`` raw images (uint8 or float 0..255).
        layers: one layer name or several (fused; see the module docstring), e.g. from `resolve_layers`.
        class_index: the class to explain: None (each image's predicted class), one int for all,
            or one per image.
        method: ``gradcam``, ``gradcam++`` or ``layercam``.
        flip: also explain the mirrored images and average (the class is the same for both).

    Returns:
        ``(maps, probs)``: maps ``(N, h, w)`` float32 >= 0 (one layer: not normalised; several: each
        layer scaled to [0, 1] before averaging), probs ``(N, K)`` of the unmirrored images.
    """
    import tensorflow as tf

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; received method={method!r}")
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one layer; received none")
    images, idx = _checked(images, class_index)
    fn = _grad_fn(model, layers)

    def run(x: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fmaps, grads, probs = fn(tf.convert_to_tensor(x, dtype=tf.float32), tf.constant(cls.astype(np.int32)))
        per_layer = [
            _combine(a.numpy().astype(np.float64), g.numpy().astype(np.float64), method) for a, g in zip(fmaps, grads)
        ]
        return _fuse(per_layer), probs.numpy()

    maps, probs_all = [], []
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size]
        cls = np.full(len(x), -1, np.int32) if idx is None else idx[s : s + batch_size]
        m, probs = run(x, cls)
        if flip:
            chosen = probs.argmax(-1) if idx is None else cls
            mf, _ = run(x[:, :, ::-1], np.asarray(chosen))
            m = (_scale01(m) + _scale01(mf[:, :, ::-1])) / 2
        maps.append(m.astype(np.float32))
        probs_all.append(probs)
    return np.concatenate(maps), np.concatenate(probs_all)


def cam_maps_many(
    model,
    images: np.ndarray,
    settings: Sequence[CamSetting],
    backbone: str,
    class_index: int | Sequence[int] | None = None,
    *,
    batch_size: int = 16,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`cam_maps` for several settings at once, from shared passes: one forward/backward pass per batch
    through every layer the settings name (and one of the mirrored images if any setting flips), each
    setting's maps then combined from those activations and gradients. The maps equal `cam_maps`' for
    each setting (the gradient of the class score at a layer does not depend on which other layers are
    watched); a comparison of ``k`` settings costs ~1 pass instead of ``k``.

    Args:
        settings: the map settings (`CamSetting`), e.g. every row of the explain chapter's comparison.
        backbone: the backbone whose layers the settings name (`CamSetting.layer_names`).
        class_index: as in `cam_maps` (None: each image's predicted class).

    Returns:
        ``({setting name: maps (N, h, w) float32 >= 0}, probs (N, K))``.
    """
    import tensorflow as tf

    settings = list(settings)
    if not settings:
        raise ValueError("settings must name at least one CamSetting; received none")
    images, idx = _checked(images, class_index)
    names = {cs.name: cs.layer_names(backbone) for cs in settings}
    layers = tuple(dict.fromkeys(name for ls in names.values() for name in ls))
    fn = _grad_fn(model, layers)

    def run(x: np.ndarray, cls: np.ndarray):
        fmaps, grads, probs = fn(tf.convert_to_tensor(x, dtype=tf.float32), tf.constant(cls.astype(np.int32)))
        ag = {k: (a.numpy().astype(np.float64), g.numpy().astype(np.float64)) for k, a, g in zip(layers, fmaps, grads)}
        return ag, probs.numpy()

    def combine(ag, cs: CamSetting) -> np.ndarray:
        return _fuse([_combine(*ag[name], cs.method) for name in names[cs.name]])

    out = {cs.name: [] for cs in settings}
    probs_all = []
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size]
        cls = np.full(len(x), -1, np.int32) if idx is None else idx[s : s + batch_size]
        ag, probs = run(x, cls)
        ag_flip = None
        for cs in settings:
            m = combine(ag, cs)
            if cs.flip:
                if ag_flip is None:
                    chosen = probs.argmax(-1) if idx is None else cls
                    ag_flip, _ = run(x[:, :, ::-1], np.asarray(chosen))
                m = (_scale01(m) + _scale01(combine(ag_flip, cs)[:, :, ::-1])) / 2
            out[cs.name].append(m.astype(np.float32))
        probs_all.append(probs)
    return {k: np.concatenate(v) for k, v in out.items()}, np.concatenate(probs_all)


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


def class_activation_maps(
    model,
    images: np.ndarray,
    layers: str | Sequence[str],
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "layercam",
    flip: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Maps ``(N, H, W)`` in [0, 1] at the input resolution (see `cam_maps` for the arguments)."""
    maps, _ = cam_maps(model, images, layers, class_index, method=method, flip=flip, batch_size=batch_size)
    return upsample_normalise(maps, tuple(np.asarray(images).shape[1:3]))


def grad_cam(
    model,
    images: np.ndarray,
    target_layer: str | Sequence[str],
    class_index: int | Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    flip: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """`class_activation_maps` with Grad-CAM as the default method (the paper's maps)."""
    return class_activation_maps(
        model, images, target_layer, class_index, method=method, flip=flip, batch_size=batch_size
    )


def predict_and_explain(
    model,
    images: np.ndarray,
    layers: str | Sequence[str],
    *,
    method: str = "gradcam",
    flip: bool = False,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), maps (N, H, W))`` for the predicted classes, in one forward/backward pass
    (two with ``flip``)."""
    maps, probs = cam_maps(model, images, layers, None, method=method, flip=flip, batch_size=batch_size)
    return probs, upsample_normalise(maps, tuple(np.asarray(images).shape[1:3]))
