"""From files to batches: decoded, letterboxed arrays (cached on disk), the paper's augmentation, tf.data.

Models take raw images (float 0..255 RGB) and normalise inside (`tumorlens.models.layers.Preprocess`), so
nothing here knows a backbone's pixel range. TensorFlow and Keras are imported inside the functions that
build graphs: scanning and decoding need neither, and importing TensorFlow costs seconds.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.data.inventory import ImageRecord, fingerprint
from tumorlens.data.io import letterbox, read_image
from tumorlens.utils.files import cached, save_npy
from tumorlens.utils.progress import progress

__all__ = ["load_images", "augmentation", "augment_views", "make_dataset"]


# decoded, resized arrays (cached)
def _load_one(args: tuple[Path, int]) -> np.ndarray:
    path, size = args
    arr, _ = read_image(path)
    return letterbox(arr, size)


def load_images(
    records: Sequence[ImageRecord], size: int, *, cache: bool = True, show_progress: bool = True, desc: str = "decoding"
) -> np.ndarray:
    """Decode and letterbox ``records`` to ``uint8 (N, size, size, 3)``.

    Arrays are cached under ``$TUMORLENS_CACHE/images`` keyed by every file's path, size and
    modification time and by ``size``; a later call with the same images reads the cache.
    Raises `BadImageError` naming the file if one became unreadable since it was scanned.
    """
    if not records:
        return np.zeros((0, size, size, 3), np.uint8)
    root = Path(records[0].root)
    files = [r.path for r in records]
    if not cache:
        return _decode(files, size, desc, show_progress)
    h = hashlib.sha1(f"{size}|".encode())
    h.update(fingerprint(files, root).encode())
    cache_file = paths.cache_root() / "images" / f"{h.hexdigest()[:20]}-{size}px-{len(files)}.npy"

    def load(f: Path) -> np.ndarray | None:
        arr = np.load(f, mmap_mode="r")
        return np.asarray(arr) if arr.shape == (len(files), size, size, 3) else None

    return cached(cache_file, load, lambda: _decode(files, size, desc, show_progress), save_npy)


def _decode(files: Sequence[Path], size: int, desc: str, show_progress: bool) -> np.ndarray:
    out = np.empty((len(files), size, size, 3), np.uint8)
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        for i, a in enumerate(
            progress(
                pool.map(_load_one, [(f, size) for f in files]),
                total=len(files),
                desc=desc,
                unit="img",
                disable=not show_progress,
            )
        ):
            out[i] = a
    return out


def augmentation(
    rotation: float = 0.05,
    zoom: float = 0.1,
    translation: float = 0.05,
    contrast: float = 0.1,
    seed: int | None = None,
    *,
    extra: Sequence = (),
):
    """The paper's train-only augmentation as a Keras block (inputs float 0..255, ``(B, H, W, 3)``),
    optionally followed by ``extra`` layers (e.g. `tumorlens.data.intensity.RandomIntensity`).

    Args:
        rotation: maximum rotation in radians (+-); converted to Keras' fraction of a full turn.
        zoom: maximum zoom in or out (fraction of the side).
        translation: maximum shift (fraction of the side), both axes.
        contrast: maximum contrast change (+-).
        seed: makes the random draws reproducible.
        extra: Keras layers applied after those (none: the paper's block).
    """
    import keras

    layers = []
    if rotation:
        layers.append(
            keras.layers.RandomRotation(rotation / (2 * np.pi), fill_mode="constant", seed=seed, name="aug_rotation")
        )
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=seed, name="aug_zoom"))
    if translation:
        layers.append(
            keras.layers.RandomTranslation(
                translation, translation, fill_mode="constant", seed=seed, name="aug_translation"
            )
        )
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed, name="aug_contrast"))
    layers += list(extra)
    return keras.Sequential(layers, name="augmentation")


def augment_views(
    image: np.ndarray,
    n: int = 8,
    *,
    rotation: float = 0.05,
    zoom: float = 0.1,
    translation: float = 0.05,
    contrast: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """``n`` augmented copies of one uint8 ``(H, W, 3)`` image, as uint8 ``(n, H, W, 3)`` (for previews)."""
    aug = augmentation(rotation, zoom, translation, contrast, seed=seed)
    batch = np.repeat(image[None].astype(np.float32), n, axis=0)
    out = np.asarray(aug(batch, training=True))
    return np.clip(out, 0, 255).astype(np.uint8)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int = 32,
    training: bool = False,
    augment=None,
    seed: int = 42,
    sample_weight: np.ndarray | None = None,
):
    """A ``tf.data`` pipeline over cached uint8 images: (shuffle, augment if training), float 0..255, prefetch.
    With ``sample_weight`` (and labels) its elements are ``(image, label, weight)``.

    Validation and test pipelines (``training=False``) are never shuffled nor augmented.
    """
    import tensorflow as tf

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
    if sample_weight is not None and labels is None:
        raise ValueError("sample_weight needs labels")
    if sample_weight is not None and len(sample_weight) != len(images):
        raise ValueError(f"sample_weight must hold one weight per image ({len(images)}); got {len(sample_weight)}")
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(images)
    elif sample_weight is None:
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, labels, np.asarray(sample_weight, np.float32)))
    if training:
        ds = ds.shuffle(min(len(images), 4096), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def prep(x, *y):
        x = tf.cast(x, tf.float32)
        if training and augment is not None:
            x = augment(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0)
        return (x, *y) if y else x

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
