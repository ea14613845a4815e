"""Refined weak masks: a small segmentation network trained on CAM + GrabCut pseudo-masks.

The usual second stage of weakly supervised segmentation (e.g. Ahn & Kwak, 2018; Kolesnikov &
Lampert, 2016): the first stage's masks are noisy but right more often than wrong, and a network
trained on many of them learns what they share — the lesion's appearance — and averages the noise out.

    training images + image labels only --CAM (true class) + GrabCut-->  pseudo-masks
        (no-tumour images: empty masks)
    frozen classifier encoder (strides 4, 8, 16, 32) --> U-Net-style decoder --> tumour probability

Nothing here sees an expert mask: the pseudo-masks come from the classifier's maps and the image
labels of the training split. Expert masks only choose the probability threshold on their tuning
half and score the other half (`tumorlens.explain.scoring`).

The decoder reads the classifier's own layers (the backbone's `skip_layers`), so the saved
**segmenter** is one ``.keras`` model from raw images ``(B, S, S, 3)`` to
``[probs (B, K), mask (B, S/4, S/4, 1)]``: one forward pass classifies and outlines. Training runs
on the encoder features computed once (the encoder is frozen), so it is cheap on a CPU.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import keras
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.prepared import prepare
from tumorlens.explain.cam import CamSetting, class_activation_maps
from tumorlens.explain.weak_masks import NO_TUMOUR, SegmentParams, head_mask, segment, weak_mask
from tumorlens.models.backbones import get_spec
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import batched_predict
from tumorlens.utils.environment import cpu_threads
from tumorlens.utils.files import atomic_path, write_json
from tumorlens.utils.progress import progress

__all__ = [
    "DECODER_STRIDES",
    "skip_layer_names",
    "PseudoMasks",
    "pseudo_masks",
    "build_decoder",
    "build_segmenter",
    "encoder_features",
    "train_decoder",
    "mask_probabilities",
    "segmenter_outputs",
    "upsample_maps",
    "network_mask",
    "tumour_evidence",
    "train_segmenter",
    "network_pseudo_masks",
    "load_segmenter",
    "dice_bce_loss",
    "masked_dice_bce_loss",
    "IGNORE_RULES",
    "mask_and_ignore",
    "SEGMENTER_FILE",
    "TUMOUR_CLASSES",
    "mask_channels",
]

#: Encoder strides the decoder reads, coarse to fine.
DECODER_STRIDES: tuple[int, ...] = (32, 16, 8, 4)
#: The segmenter's file name inside a run's explain folder.
SEGMENTER_FILE = "segmenter.keras"
#: The classes a per-class decoder has a map for, in channel order.
TUMOUR_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c != NO_TUMOUR)


@dataclass
class PseudoMasks:
    """Pseudo-masks of training images at the model input resolution."""

    masks: np.ndarray  # bool (N, S, S): CAM + GrabCut for tumour images, empty for no-tumour ones
    labels: np.ndarray  # int (N,)
    ignore: np.ndarray | None = None  # bool (N, S, S): pixels no loss is taken on (``segment.network_ignore``)

    @property
    def ignored_fraction(self) -> float | None:
        """Mean share of a tumour image's pixels ignored in training (None without an ignore mask)."""
        if self.ignore is None:
            return None
        t = self.labels != CLASSES.index(NO_TUMOUR)
        return float(self.ignore[t].mean()) if t.any() else 0.0

    @property
    def tumour_fraction(self) -> float:
        """Mean mask area of the tumour images (share of the image)."""
        t = self.labels != CLASSES.index(NO_TUMOUR)
        return float(self.masks[t].mean()) if t.any() else 0.0


def pseudo_masks(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    layers: tuple[str, ...],
    params: SegmentParams,
    *,
    method: str = "layercam",
    flip: bool = False,
    kind: str = "grabcut",
    ignore: str = "none",
    batch_size: int = 32,
    show_progress: bool = True,
) -> PseudoMasks:
    """Masks from the map of the **labelled** class for every tumour image (``kind``: ``grabcut``, the
    map refined by GrabCut, or ``cam``, the binarised map inside the head); empty masks for no-tumour images.
    ``ignore="disagree"`` also marks the pixels where the two masks of the map (binarised and refined by
    GrabCut) disagree: the unreliable band the decoder takes no loss on (`mask_and_ignore`).

    Args:
        model: the trained classifier.
        images: ``(N, S, S, 3)`` uint8 training images.
        labels: ``(N,)`` class indices (image labels: the only supervision).
        layers, method, flip: the map (see `tumorlens.explain.cam.cam_maps`).
        params: GrabCut levels (`SegmentParams`).

    Returns:
        `PseudoMasks` with bool masks ``(N, S, S)``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels, int)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"need images (N, S, S, 3) and N labels; received {images.shape} and {labels.shape}")
    _check_ignore(ignore)
    masks = np.zeros(images.shape[:3], bool)
    ignored = np.zeros(images.shape[:3], bool) if ignore != "none" else None
    tumour = np.flatnonzero(labels != CLASSES.index(NO_TUMOUR))
    starts = range(0, len(tumour), batch_size)
    with ThreadPoolExecutor(cpu_threads()) as pool:  # OpenCV releases the GIL
        for s in progress(starts, total=len(starts), desc="pseudo-masks", unit="batch", disable=not show_progress):
            idx = tumour[s : s + batch_size]
            cams = class_activation_maps(model, images[idx], layers, labels[idx], method=method, flip=flip)
            done = pool.map(
                lambda k: _masks_of(images[idx[k]], cams[k], CLASSES[labels[idx[k]]], params, kind, ignore),
                range(len(idx)),
            )
            for k, (m, ig) in enumerate(done):
                masks[idx[k]] = m
                if ignored is not None:
                    ignored[idx[k]] = ig
    return PseudoMasks(masks, labels, ignored)


#: ``segment.network_ignore``: the pixels of a pseudo-mask the decoder takes no loss on.
IGNORE_RULES = ("none", "disagree")


def _check_ignore(ignore: str) -> None:
    if ignore not in IGNORE_RULES:
        raise ValueError(f"ignore must be one of {', '.join(IGNORE_RULES)}; received ignore={ignore!r}")


def mask_and_ignore(
    image: np.ndarray, cam: np.ndarray, predicted_class: str, params: SegmentParams, kind: str = "grabcut"
) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo-mask of ``kind`` and its unreliable pixels (UM-CAM's idea of leaving them out of the loss):
    where the binarised map and the map refined by GrabCut disagree; both bool ``(H, W)``, empty for no tumour."""
    m = segment(image, cam, predicted_class, params)
    return m[kind], m["cam"] ^ m["grabcut"]


def _masks_of(image, cam, cls: str, params: SegmentParams, kind: str, ignore: str) -> tuple[np.ndarray, object]:
    if ignore == "none":
        return weak_mask(image, cam, cls, params, kind), None
    return mask_and_ignore(image, cam, cls, params, kind)


def skip_layer_names(backbone: str) -> list[str]:
    spec = get_spec(backbone)
    if not all(s in spec.skip_layers for s in DECODER_STRIDES):
        raise ValueError(
            f"backbone {backbone!r} names no encoder layers at strides {DECODER_STRIDES}: the weak-mask network "
            "needs a convolutional backbone (efficientnet_lite0, efficientnetb0, mobilenetv2, vgg16)"
        )
    return [spec.skip_layers[s] for s in DECODER_STRIDES]


def build_decoder(
    shapes: list[tuple[int, ...]], width: int = 32, name: str = "mask_decoder", outputs: int = 1
) -> keras.Model:
    """A U-Net-style decoder: encoder features at strides 32, 16, 8, 4 -> tumour probability at stride 4.

    Args:
        shapes: ``(h, w, c)`` of the four feature maps, coarse to fine (each twice the previous side, or
            one less: "same" padding rounds odd sides up).
        width: channels of the finest stage (coarser stages use 2x and 4x).
        outputs: 1 (one class-agnostic tumour map) or one map per tumour class (`TUMOUR_CLASSES`).

    Returns:
        A ``keras.Model`` from the four maps to ``(B, h4, w4, outputs)`` sigmoid probabilities; layers
        named ``seg_*``.
    """
    if len(shapes) != len(DECODER_STRIDES):
        raise ValueError(f"need {len(DECODER_STRIDES)} feature shapes (strides {DECODER_STRIDES}); received {shapes}")
    if width < 4:
        raise ValueError(f"width must be >= 4; received width={width!r}")
    for k in range(1, len(shapes)):
        for a in (0, 1):
            if 2 * shapes[k - 1][a] - shapes[k][a] not in (0, 1):
                raise ValueError(
                    f"each feature map must be twice the previous one's side (or one less); received shapes {shapes}"
                )
    if outputs not in (1, len(TUMOUR_CLASSES)):
        raise ValueError(
            f"outputs must be 1 or {len(TUMOUR_CLASSES)} (one per tumour class); received outputs={outputs!r}"
        )
    inputs = [keras.Input(s, name=f"seg_in_s{st}") for s, st in zip(shapes, DECODER_STRIDES)]
    chans = [4 * width, 4 * width, 2 * width, width]
    x = keras.layers.Conv2D(chans[0], 1, name="seg_reduce_s32")(inputs[0])
    x = keras.layers.BatchNormalization(momentum=0.9, name="seg_bn_s32")(x)
    x = keras.layers.ReLU(name="seg_relu_s32")(x)
    for k, (inp, st) in enumerate(zip(inputs[1:], DECODER_STRIDES[1:]), start=1):
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"seg_up_s{st}")(x)
        # an input side that is not a multiple of 32 (Lite1: 240 px, Lite2: 260 px) gives odd finer maps
        # ("same" padding rounds up): the doubled coarse map is then one row/column longer; crop it
        dh, dw = int(x.shape[1]) - shapes[k][0], int(x.shape[2]) - shapes[k][1]
        if (dh, dw) != (0, 0):
            x = keras.layers.Cropping2D(((0, dh), (0, dw)), name=f"seg_crop_s{st}")(x)
        skip = keras.layers.Conv2D(chans[k] // 2, 1, name=f"seg_skip_s{st}")(inp)
        x = keras.layers.Concatenate(name=f"seg_cat_s{st}")([x, skip])
        x = keras.layers.Conv2D(chans[k], 3, padding="same", use_bias=False, name=f"seg_conv_s{st}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"seg_bn_s{st}")(x)
        x = keras.layers.ReLU(name=f"seg_relu_s{st}")(x)
    out = keras.layers.Conv2D(outputs, 1, activation="sigmoid", dtype="float32", name="seg_mask")(x)
    return keras.Model(inputs, out, name=name)


def _encoder(classifier, backbone: str) -> keras.Model:
    names = skip_layer_names(backbone)
    return keras.Model(classifier.inputs, [classifier.get_layer(n).output for n in names], name="mask_encoder")


def build_segmenter(classifier, backbone: str, decoder: keras.Model | None = None, width: int = 32) -> keras.Model:
    """One model: raw images ``(B, S, S, 3)`` -> ``[probs (B, K), mask (B, S/4, S/4, 1)]``, the decoder
    reading the classifier's own layers (shared, so the classifier's predictions are unchanged)."""
    feats = [classifier.get_layer(n).output for n in skip_layer_names(backbone)]
    decoder = decoder or build_decoder([tuple(f.shape[1:]) for f in feats], width)
    return keras.Model(classifier.inputs, [classifier.output, decoder(feats)], name=f"{classifier.name}-segmenter")


def encoder_features(
    classifier, backbone: str, images: np.ndarray, batch_size: int = 32, show_progress: bool = True
) -> list[np.ndarray]:
    """The four encoder feature maps of uint8 images, float16 (they are computed once for training)."""
    enc = _encoder(classifier, backbone)
    out = [[] for _ in DECODER_STRIDES]
    n, chunk = len(images), 256
    for s in progress(range(0, n, chunk), total=-(-n // chunk), desc="encoder features", disable=not show_progress):
        part = batched_predict(enc, [images[s : s + chunk].astype("float32")], batch_size, "", False)
        for k, p in enumerate(part):
            out[k].append(p.astype(np.float16))
    return [np.concatenate(o) for o in out]


def _targets(
    masks: np.ndarray, side: int, labels: np.ndarray | None = None, ignore: np.ndarray | None = None
) -> np.ndarray:
    """Bool masks ``(N, S, S)`` -> soft targets ``(N, side, side, 1)`` (area-averaged); with ``labels``
    ``(N, side, side, 3)``: the mask in its labelled class's channel (`TUMOUR_CLASSES`), the other
    channels empty (the image label says there is no tumour of those classes). With ``ignore`` (bool
    ``(N, S, S)``) each channel gets a weight channel after the targets (``(N, side, side, 2C)``): the share
    of its cell that is not ignored (`masked_dice_bce_loss` reads it)."""
    c = 1 if labels is None else len(TUMOUR_CLASSES)
    out = np.zeros((len(masks), side, side, c if ignore is None else 2 * c), np.float32)
    if ignore is not None:
        out[..., c:] = 1.0
    for i, m in enumerate(masks):
        ch = 0 if labels is None else _channel(int(labels[i]))
        if ch is not None:
            out[i, ..., ch] = cv2.resize(m.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
        if ignore is not None and ignore[i].any():
            keep = cv2.resize((~ignore[i]).astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
            out[i, ..., c:] = keep[..., None]
    return out


def _channel(class_index: int) -> int | None:
    """The per-class decoder's channel of a class index of `CLASSES` (None for no tumour)."""
    name = CLASSES[class_index]
    return TUMOUR_CLASSES.index(name) if name in TUMOUR_CLASSES else None


def mask_channels(probs: np.ndarray, low: np.ndarray, class_index: Sequence[int] | None = None) -> np.ndarray:
    """One map per image from the decoder's output ``low (N, h, w, C)``: the only channel (C = 1), else
    the channel of ``class_index`` (per image, indices of `CLASSES`) or, without it, of the predicted
    class (``probs (N, K)``); an image whose class is no tumour gets its likeliest tumour class's map
    (the prediction gates the mask to empty anyway). Returns ``(N, h, w)``."""
    low = np.asarray(low)
    if low.shape[-1] == 1:
        return low[..., 0]
    probs = np.asarray(probs)
    idx = probs.argmax(1) if class_index is None else np.asarray(class_index, int)
    likeliest = probs[:, [CLASSES.index(c) for c in TUMOUR_CLASSES]].argmax(1)  # for a no-tumour class
    ch = np.array([likeliest[i] if (c := _channel(int(k))) is None else c for i, k in enumerate(idx)], int)
    return low[np.arange(len(low)), :, :, ch] if len(low) else low[..., 0]


@keras.saving.register_keras_serializable(package="tumorlens")
def dice_bce_loss(y_true, y_pred):
    """Binary cross-entropy plus a per-image soft Dice loss (empty-target images count through the BCE)."""
    from keras import ops

    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    has = ops.cast(ops.sum(y_true, axis=(1, 2, 3)) > 0, "float32")
    soft_dice = 1 - (2 * inter + 1) / (total + 1)
    return bce + has * soft_dice


@keras.saving.register_keras_serializable(package="tumorlens")
def masked_dice_bce_loss(y_true, y_pred):
    """`dice_bce_loss` with a weight per pixel: ``y_true`` holds the targets then one weight channel per
    output channel (`_targets` with ``ignore``); a weight 0 pixel adds nothing to the cross-entropy (a mean
    over the weighted pixels) nor to the soft Dice."""
    from keras import ops

    c = y_pred.shape[-1]
    t, w = y_true[..., :c], y_true[..., c:]
    eps = 1e-7
    p = ops.clip(y_pred, eps, 1 - eps)
    bce_px = -(t * ops.log(p) + (1 - t) * ops.log(1 - p))
    bce = ops.sum(w * bce_px, axis=(1, 2, 3)) / (ops.sum(w, axis=(1, 2, 3)) + eps)
    inter = ops.sum(w * t * p, axis=(1, 2, 3))
    total = ops.sum(w * t, axis=(1, 2, 3)) + ops.sum(w * p, axis=(1, 2, 3))
    has = ops.cast(ops.sum(t, axis=(1, 2, 3)) > 0, "float32")
    soft_dice = 1 - (2 * inter + 1) / (total + 1)
    return bce + has * soft_dice


class _FeatureBatches(keras.utils.PyDataset):
    """Batches of cached float16 features (as float32) and soft targets, reshuffled every epoch, each
    sample mirrored with probability 1/2 (``flip``); memory stays at the cache itself."""

    def __init__(self, features, targets, batch_size: int, seed: int, flip: bool):
        super().__init__(workers=1, use_multiprocessing=False)
        self.features, self.targets, self.batch_size, self.flip = features, targets, batch_size, flip
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(targets))

    def __len__(self) -> int:
        return -(-len(self.targets) // self.batch_size)

    def __getitem__(self, i: int):
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        xs = [f[idx].astype(np.float32) for f in self.features]
        y = self.targets[idx]
        if self.flip:
            m = np.random.default_rng((int(self.order[0]), i)).random(len(idx)) < 0.5
            xs = [np.where(m[:, None, None, None], x[:, :, ::-1], x) for x in xs]
            y = np.where(m[:, None, None, None], y[:, :, ::-1], y)
        return tuple(xs), y

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.targets))


def train_decoder(
    features: list[np.ndarray],
    masks: np.ndarray,
    *,
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 1e-3,
    width: int = 32,
    seed: int = 42,
    flip: bool = True,
    labels: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    show_progress: bool = True,
) -> tuple[keras.Model, list[dict]]:
    """Train the decoder on cached encoder features and bool pseudo-masks ``(N, S, S)``; with the image
    ``labels`` a per-class decoder (one map per tumour class, `_targets`); with ``ignore`` (bool
    ``(N, S, S)``) no loss on those pixels (`masked_dice_bce_loss`).

    ``flip`` mirrors a random half of each batch (features and masks together: the encoder is nearly
    mirror-equivariant, and the tumour's side carries no class information). Batches are cast to
    float32 as they are drawn, so memory stays at the float16 cache. Returns the decoder and one
    history row per epoch.
    """
    if len(features) != len(DECODER_STRIDES) or any(len(f) != len(masks) for f in features):
        raise ValueError(
            f"need {len(DECODER_STRIDES)} feature arrays with one row per mask ({len(masks)}); "
            f"received {[f.shape for f in features]}"
        )
    keras.utils.set_random_seed(seed)
    if ignore is not None and np.shape(ignore) != np.shape(masks):
        raise ValueError(f"ignore must have the masks' shape {np.shape(masks)}; received {np.shape(ignore)}")
    y = _targets(masks, features[-1].shape[1], labels, ignore)
    outputs = y.shape[-1] if ignore is None else y.shape[-1] // 2
    decoder = build_decoder([tuple(f.shape[1:]) for f in features], width, outputs=outputs)
    decoder.compile(optimizer=keras.optimizers.Adam(lr), loss=dice_bce_loss if ignore is None else masked_dice_bce_loss)
    history = decoder.fit(
        _FeatureBatches(features, y, batch_size, seed, flip), epochs=epochs, verbose=2 if show_progress else 0
    ).history
    rows = [{"epoch": e + 1, "loss": float(history["loss"][e])} for e in range(len(history["loss"]))]
    return decoder, rows


def network_pseudo_masks(
    segmenter,
    images: np.ndarray,
    labels: np.ndarray,
    params: SegmentParams,
    *,
    flip: bool = False,
    kind: str = "cam",
    ignore: str = "none",
    chunk: int = 256,
) -> PseudoMasks:
    """The next round's pseudo-masks: a trained segmenter's tumour probability, binarised with
    ``params`` inside the head (``kind="cam"``) or refined by GrabCut as ``params`` say (``"grabcut"``),
    for the **labelled** class (no-tumour images: empty); ``ignore`` as in `pseudo_masks`."""
    if kind not in ("cam", "grabcut"):
        raise ValueError(f"kind must be cam or grabcut; received kind={kind!r}")
    _check_ignore(ignore)
    masks = np.zeros(np.asarray(images).shape[:3], bool)
    ignored = np.zeros(masks.shape, bool) if ignore != "none" else None
    with ThreadPoolExecutor(cpu_threads()) as pool:
        for s in range(0, len(images), chunk):
            _, maps = mask_probabilities(segmenter, images[s : s + chunk], flip=flip, class_index=labels[s : s + chunk])
            done = pool.map(
                lambda k: _masks_of(images[s + k], maps[k], CLASSES[labels[s + k]], params, kind, ignore),
                range(len(maps)),
            )
            for k, (m, ig) in enumerate(done):
                masks[s + k] = m
                if ignored is not None:
                    ignored[s + k] = ig
    return PseudoMasks(masks, np.asarray(labels, int), ignored)


def train_segmenter(
    cfg,
    classifier,
    cam: CamSetting,
    params: SegmentParams,
    out_dir: str | Path,
    *,
    retune=None,
    prep=None,
    show_progress: bool = True,
) -> tuple[keras.Model, dict]:
    """The whole second stage for a config: pseudo-masks of the **training split** (image labels only),
    encoder features (once), the decoder, and the segmenter saved as ``<out_dir>/segmenter.keras``.

    Round 1 learns the map's pseudo-masks (``segment.pseudo_masks``: binarised or GrabCut, with
    ``params``). With ``segment.network_rounds`` > 1, each further round learns the previous
    network's own mask of the training images, of the same kind (self-training: binarised, or refined
    by GrabCut); ``retune(segmenter) -> (SegmentParams, tuning-half Dice)`` supplies its settings,
    chosen on the expert masks' tuning half, never on the report half.

    ``prep``: the config's `tumorlens.data.prepared.Prepared`, when the caller has it already.

    Returns the segmenter and a record (sizes, pseudo-mask settings and areas per round, per-epoch
    loss, seconds), also written to ``<out_dir>/network.json``.
    """
    s, backbone = cfg.segment, cfg.model.backbone
    skip_layer_names(backbone)  # a clear error before any work for a backbone without encoder layers
    if s.network_rounds > 1 and retune is None:
        raise ValueError(f"segment.network_rounds is {s.network_rounds}: rounds after the first need retune")
    timings = {}
    t0 = time.perf_counter()
    prep = prep or prepare(cfg, show_progress=False)
    x, y = prep.images("train", show_progress=show_progress), prep.labels("train")
    timings["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pm = pseudo_masks(
        classifier,
        x,
        y,
        cam.layer_names(backbone),
        params,
        method=cam.method,
        flip=cam.flip,
        kind=s.pseudo_masks,
        ignore=s.network_ignore,
        show_progress=show_progress,
    )
    timings["pseudo_masks_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = encoder_features(classifier, backbone, x, show_progress=show_progress)
    timings["features_s"] = time.perf_counter() - t0
    tumour = y != CLASSES.index(NO_TUMOUR)
    rounds = []
    segmenter = None
    for r in range(1, s.network_rounds + 1):
        if r > 1:
            t0 = time.perf_counter()
            net_params, tune_dice = retune(segmenter)
            rounds[-1]["tune_dice"] = tune_dice
            pm = network_pseudo_masks(
                segmenter, x, y, net_params, flip=s.network_flip, kind=s.pseudo_masks, ignore=s.network_ignore
            )
            timings[f"round{r}_pseudo_masks_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoder, history = train_decoder(
            feats,
            pm.masks,
            epochs=s.network_epochs,
            width=s.network_width,
            seed=cfg.seed,
            labels=y if s.network_per_class else None,
            ignore=pm.ignore,
            show_progress=show_progress,
        )
        timings[f"round{r}_train_s"] = time.perf_counter() - t0
        segmenter = build_segmenter(classifier, backbone, decoder)
        rounds.append(
            {
                "round": r,
                "pseudo_masks": f"{cam.name} {s.pseudo_masks}" if r == 1 else f"the previous network {s.pseudo_masks}",
                "params": (params if r == 1 else net_params).__dict__,
                "n_empty_pseudo_masks": int((~pm.masks[tumour].any(axis=(1, 2))).sum()),
                "pseudo_mask_area": pm.tumour_fraction,
                **({"ignored_area": pm.ignored_fraction} if pm.ignore is not None else {}),
                "history": history,
            }
        )
    del feats
    out = Path(out_dir)
    with atomic_path(out / SEGMENTER_FILE, ".keras") as tmp:
        segmenter.save(tmp)
    info = {
        "pseudo_masks_from": cam.name,
        "pseudo_mask_kind": s.pseudo_masks,
        "params": params.__dict__,
        "n_train": int(len(x)),
        "n_tumour": int(tumour.sum()),
        "n_empty_pseudo_masks": rounds[0]["n_empty_pseudo_masks"],
        "pseudo_mask_area": rounds[0]["pseudo_mask_area"],
        "epochs": s.network_epochs,
        "rounds": rounds,
        "width": s.network_width,
        "per_class": s.network_per_class,
        "ignore": s.network_ignore,
        "decoder_parameters": int(decoder.count_params()),
        "history": [{**h, "round": rd["round"]} for rd in rounds for h in rd["history"]],
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    write_json(out / "network.json", info, schema="network")
    return segmenter, info


def load_segmenter(path: str | Path) -> keras.Model:
    """Load a segmenter saved by `train_segmenter` (a ``.keras`` file or the folder holding ``segmenter.keras``)."""
    p = Path(path)
    p = p / SEGMENTER_FILE if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"no segmenter at {p} (expected {SEGMENTER_FILE}, written by the explain step)")
    return load_model(p)


def segmenter_outputs(
    segmenter, images: np.ndarray, batch_size: int = 32, *, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), decoder maps (N, S/4, S/4, C))`` of a segmenter at the decoder's resolution;
    ``flip`` averages the maps with the mirrored image's (mirrored back), the class probabilities are
    the unmirrored image's."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3); received shape {images.shape}")
    x = images.astype("float32")
    probs, low = batched_predict(segmenter, [x], batch_size, "", False)
    if flip:
        _, low_f = batched_predict(segmenter, [x[:, :, ::-1]], batch_size, "", False)
        low = (low + low_f[:, :, ::-1]) / 2
    return probs, low


def upsample_maps(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` probabilities -> ``(N, H, W)`` (bilinear), clipped to [0, 1], float32."""
    h, w = size
    up = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in low]) if len(low) else low
    return np.clip(up, 0, 1).astype(np.float32)


def mask_probabilities(
    segmenter, images: np.ndarray, batch_size: int = 32, *, flip: bool = False, class_index=None
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), tumour probability (N, S, S))`` from a segmenter, upsampled to the input size.

    ``flip`` averages the map with the mirrored image's (mirrored back); the class probabilities are
    the unmirrored image's. A per-class segmenter gives the map of ``class_index`` (per image) or of
    the predicted class (`mask_channels`).
    """
    probs, low = segmenter_outputs(segmenter, images, batch_size, flip=flip)
    return probs, upsample_maps(mask_channels(probs, low, class_index), np.asarray(images).shape[1:3])


def tumour_evidence(
    segmenter, images: np.ndarray, batch_size: int = 32, *, flip: bool = False, q: float = 99.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), evidence (N,))``: how strongly the weak-mask network sees a tumour in each image,
    the ``q``-th percentile of its tumour probability inside the head (`head_mask`; 0 for an image
    without one), beside the class probabilities. A per-class segmenter gives the predicted class's map.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be a percentile in [0, 100]; received q={q}")
    probs, maps = mask_probabilities(segmenter, images, batch_size, flip=flip)
    evidence = np.zeros(len(maps), np.float32)
    for i, (image, prob) in enumerate(zip(np.asarray(images), maps)):
        head = head_mask(image)
        evidence[i] = np.percentile(prob[head], q) if head.any() else 0.0
    return probs, evidence


def network_mask(image: np.ndarray, prob: np.ndarray, predicted_class: str, threshold: float) -> np.ndarray:
    """The network's mask for one image: probability >= ``threshold`` inside the head; empty for a
    ``notumor`` prediction (as every weak mask)."""
    if predicted_class == NO_TUMOUR:
        return np.zeros(prob.shape, bool)
    return (prob >= threshold) & head_mask(image)
