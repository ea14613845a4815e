"""Prefix caching: the frozen part of the network computed once per image set and stored on disk.

Files live in ``$TUMORLENS_CACHE/prefix/<key>.npz``. A key names everything the frozen prefix's outputs
depend on (backbone, weights, image size, augmentation, data seed and every image's path, size and
modification time) plus the cut, so runs of one profile with different model seeds share the files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from tumorlens import paths
from tumorlens.config import Config
from tumorlens.data.intensity import RandomConvIntensity, RandomIntensity
from tumorlens.data.pipeline import augmentation
from tumorlens.models.classifier import head_input_names
from tumorlens.models.inference import batched_predict
from tumorlens.training.cut import find_cut
from tumorlens.utils.files import cached, hash_files, save_npz

__all__ = ["prefix_outputs", "augmentation_for", "augmented_view", "cache_keys", "cached_prefix_file"]


def prefix_outputs(
    prefix,
    images_fn: Callable[[], np.ndarray],
    key: str | None,
    batch_size: int,
    desc: str,
    show: bool,
    half: bool = True,
) -> list[np.ndarray]:
    """Outputs of the frozen prefix for a set of images, from ``$TUMORLENS_CACHE/prefix/<key>.npz``
    when present, else computed (and stored when ``key`` is given). Training views are stored as
    float16 (``half``); evaluation sets in full precision, so predictions match the saved model. The
    images stay uint8 until each batch is cast (a float32 copy of a whole training set is gigabytes)."""

    if not key:
        return batched_predict(prefix, [images_fn()], batch_size, desc, show)

    def compute() -> list[np.ndarray]:  # a cache hit and a miss must train on identical numbers: round both alike
        out = batched_predict(prefix, [images_fn()], batch_size, desc, show)
        return [o.astype(np.float16 if half else np.float32) for o in out]

    def load(f: Path) -> list[np.ndarray]:
        with np.load(f) as z:
            return [z["cut"], z["edges"]]

    file = paths.cache_root() / "prefix" / f"{key}.npz"
    stored = cached(file, load, compute, lambda f, v: save_npz(f, cut=v[0], edges=v[1]))
    return [h.astype(np.float32) for h in stored]


def augmentation_for(a, seed: int | None = None):
    """The training augmentation of an ``augment`` settings section (`tumorlens.config.AugmentConfig`):
    the paper's block, then the random-convolution contrast remap (GIN) and intensity remapping when
    their strengths are set."""
    extra = [RandomConvIntensity(a.gin, seed=seed, name="aug_gin")] if a.gin else []
    if a.gamma or a.bias_field or a.noise or a.invert:
        extra.append(RandomIntensity(a.gamma, a.bias_field, a.noise, seed=seed, invert=a.invert, name="aug_intensity"))
    return augmentation(a.rotation, a.zoom, a.translation, a.contrast, seed=seed, extra=extra)


def augmented_view(images: np.ndarray, a, seed: int, batch_size: int) -> np.ndarray:
    """One augmented view of every image: a pure function of (images, augmentation settings, seed)."""

    aug = augmentation_for(a, seed=seed)
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        x = aug(images[s : s + batch_size].astype("float32"), training=True)
        out[s : s + batch_size] = np.clip(np.asarray(x), 0, 255).round().astype(np.uint8)
    return out


def cache_keys(cfg: Config, prep) -> dict[str, str]:
    """Names of the image sets for the shared prefix cache: everything the frozen prefix's outputs
    depend on except the cut (added by `train_model`). ``train``, ``val`` and ``test`` name the images
    themselves (the backbone, its weights, the image size and the files), so runs that differ only in
    their augmentation share them; ``train_aug`` names the training split's augmented views (the
    augmentation settings and the data seed as well)."""

    m, a = cfg.model, cfg.augment
    weights = m.weights
    if weights not in ("imagenet", "none"):
        st = Path(weights).expanduser().stat()
        weights = f"{Path(weights).name}-{st.st_size}-{st.st_mtime_ns}"
    elif weights == "none":
        weights = f"random{cfg.seed}"  # a random backbone differs per model seed: nothing to share
    images = "|".join(str(v) for v in (m.backbone, weights, cfg.data.image_size))
    aug = "|".join(str(v) for v in (a.rotation, a.zoom, a.translation, a.contrast, cfg.data.seed))
    # the intensity remappings (settings added later) enter the key only when on
    if a.gamma or a.bias_field or a.noise:
        aug += f"|intensity:{a.gamma}|{a.bias_field}|{a.noise}"
    if a.invert:
        aug += f"|invert:{a.invert}"
    if a.gin:
        aug += f"|gin:{a.gin}"
    out = {}
    for split in ("train", "val", "test"):
        h = hash_files(hashlib.sha1(images.encode()), ((r.rel, r.path) for r in prep.splits[split]))
        out[split] = f"{m.backbone}-{split}-{h.hexdigest()[:16]}"
    out["train_aug"] = f"{out['train']}-aug{hashlib.sha1(aug.encode()).hexdigest()[:10]}"
    return out


def cached_prefix_file(model, cfg: Config, prep, split: str) -> tuple[Path, object, list] | None:
    """The shared prefix-cache file holding ``split``'s frozen-prefix outputs for a model trained
    with ``cfg`` (view 0 for train), with the cut tensor and head inputs to feed; None if absent."""

    if not (cfg.data.cache and cfg.train.prefix_cache):
        return None
    t = cfg.train
    k, layers = find_cut(model, t.finetune_layers)
    do_finetune = t.finetune_epochs > 0 and t.finetune_layers > 0
    names = head_input_names(model, cfg.model.backbone)
    feat = model.get_layer(names[0]).output
    if do_finetune and k < 0:
        return None
    cut_name = layers[k].name if do_finetune else names[0]
    grid = tuple(int(d) for d in feat.shape[1:3])
    key = cache_keys(cfg, prep)[split] + ("-v0" if split == "train" else "")
    file = paths.cache_root() / "prefix" / f"{key}-{cut_name}-{grid[0]}x{grid[1]}.npz"
    if not file.is_file():
        return None
    extra = [model.get_layer(n).output for n in names[1:]]
    return file, model.get_layer(cut_name).output, extra
