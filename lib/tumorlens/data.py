"""The data layer: scan a dataset folder, report bad files, split, preprocess, augment, tf.data.

Layouts read (class folders ``glioma``, ``meningioma``, ``notumor`` — or ``no_tumor`` —,
``pituitary``)::

    ROOT/Training/<class>/*  and  ROOT/Testing/<class>/*     the Kaggle layout ("kaggle")
    ROOT/<class>/*                                           one folder of class folders ("folder")

Typical use::

    report = scan("data/brain-tumor-mri")          # bad files are listed in report.bad, never raised
    splits = make_splits(report, "official", seed=42)
    x = load_images(splits["train"], size=224)     # uint8 (N, 224, 224, 3), cached on disk

Preprocessing (the paper's): the image is resized to a square keeping its aspect ratio — the
shorter side is padded with black, never stretched — and grayscale is repeated to 3 channels.
Per-backbone normalisation lives in one place, `normalise`. Augmentation (train only) is a Keras
preprocessing block, `augmentation`. TensorFlow is imported lazily: scanning needs none.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.progress import progress

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ScanReport",
    "read_image",
    "letterbox",
    "scan",
    "make_splits",
    "load_images",
    "labels_of",
    "normalise",
    "augmentation",
    "make_dataset",
    "Prepared",
    "prepare",
    "split_counts",
    "augment_views",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: Folder names other datasets use for the same four classes.
CLASS_ALIASES = {
    "no_tumor": "notumor", "no_tumour": "notumor", "notumour": "notumor", "no": "notumor",
    "glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "pituitary_tumor": "pituitary",
}
SPLIT_ALIASES = {"training": "Training", "train": "Training", "testing": "Testing", "test": "Testing"}
MIN_SIDE = 16            # pixels: smaller images carry no usable anatomy
MAX_PIXELS = 64_000_000  # larger images are refused before decoding (decompression bombs)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode half grey
Image.MAX_IMAGE_PIXELS = None             # we enforce MAX_PIXELS ourselves, with a clear reason

GET_DATA_HELP = (
    "Get the Kaggle 'Brain Tumor MRI Dataset' (Masoud Nickparvar, CC0): run `make data` "
    "(or `tumorlens data fetch`, which needs Kaggle credentials and network), or download it "
    "by hand from https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset and "
    "unpack it so that ROOT/Training/<class>/ and ROOT/Testing/<class>/ exist; then point "
    "TUMORLENS_DATA at ROOT (or set data.root in _config.yml). See data/README.md. "
    "To try the project without it, use the smoke profile (synthetic phantoms)."
)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset folder is missing or holds no images; the message says how to get the data."""


class BadImageError(ValueError):
    """One file cannot be used as an image; ``reason`` says why in words."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


# ------------------------------------------------------------------------------------------------
# one image
def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Decode an image file to ``uint8 (H, W, 3)``.

    Grayscale becomes 3 identical channels; CMYK is converted to RGB; 16-bit (and float) images
    are rescaled to 8 bits by their own min-max. Those conversions are returned as a note.

    Returns:
        ``(array, note)`` where note is None or a short description of a conversion made.

    Raises:
        BadImageError: empty, unreadable, not an image, truncated/corrupt, too small or too large.
    """
    p = Path(path)
    try:
        nbytes = p.stat().st_size
    except OSError as exc:
        raise BadImageError(p, f"cannot read file ({exc.strerror})") from None
    if nbytes == 0:
        raise BadImageError(p, "empty file (0 bytes)")
    note = None
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise BadImageError(p, f"image too large ({w}x{h} px; the limit is {MAX_PIXELS // 1_000_000} megapixels)")
            if min(w, h) < MIN_SIDE:
                raise BadImageError(p, f"image too small ({w}x{h} px; at least {MIN_SIDE} px per side needed)")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
                arr = np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
                note = f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} image rescaled to 8-bit (min-max)"
            elif mode == "L":
                arr = np.repeat(np.asarray(im)[..., None], 3, axis=2)
            else:
                if mode == "CMYK":
                    note = "CMYK image converted to RGB"
                arr = np.asarray(im.convert("RGB"))
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(p, "not an image (file format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(p, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(p, f"corrupt or truncated image data ({exc})") from None
    return np.ascontiguousarray(arr), note


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``(size, size, C)`` keeping the aspect ratio: scale the longer side, pad with black."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[..., None]
    out = np.zeros((size, size, image.shape[2] if image.ndim == 3 else 1), dtype=image.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out if image.ndim == 3 else out[..., 0]


# ------------------------------------------------------------------------------------------------
# a folder
@dataclass(frozen=True)
class ImageRecord:
    """One usable image: where it is, its split in the source layout and its class."""

    rel: str     # path relative to the dataset root, with forward slashes
    split: str   # Training | Testing | all
    cls: str     # one of CLASSES
    root: str    # the dataset root

    @property
    def path(self) -> Path:
        return Path(self.root) / self.rel

    @property
    def label(self) -> int:
        return CLASSES.index(self.cls)


@dataclass
class ScanReport:
    """What `scan` found. ``bad`` files were skipped; ``converted`` ones were kept after a conversion."""

    root: str
    layout: str
    records: list[ImageRecord]
    bad: list[dict] = field(default_factory=list)        # {"path", "reason"}: skipped
    converted: list[dict] = field(default_factory=list)  # {"path", "note"}: kept
    ignored: list[dict] = field(default_factory=list)    # {"path", "reason"}: not image files / not in a class
    warnings: list[str] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)  # single-channel / rgb-gray / rgb-colour counts

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            out.setdefault(r.split, {c: 0 for c in CLASSES})[r.cls] += 1
        for d in out.values():
            d["total"] = sum(d[c] for c in CLASSES)
        return out

    def to_dict(self) -> dict:
        return {
            "root": self.root, "layout": self.layout, "n_images": len(self.records),
            "counts": self.counts(), "channels": self.modes,
            "n_bad": len(self.bad), "bad": self.bad, "converted": self.converted,
            "ignored": self.ignored, "warnings": self.warnings,
        }

    def summary(self) -> str:
        lines = [f"{self.root} ({self.layout} layout): {len(self.records)} usable images"]
        for split, c in self.counts().items():
            lines.append(f"  {split:9s} " + "  ".join(f"{k}={c[k]}" for k in (*CLASSES, "total")))
        if self.modes:
            lines.append("  channels: " + ", ".join(f"{k}={v}" for k, v in sorted(self.modes.items())))
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        if self.bad:
            lines.append(f"  {len(self.bad)} bad file(s) skipped:")
            lines += [f"    {b['path']}: {b['reason']}" for b in self.bad]
        if self.converted:
            lines.append(f"  {len(self.converted)} file(s) converted:")
            lines += [f"    {b['path']}: {b['note']}" for b in self.converted]
        if self.ignored:
            lines.append(f"  {len(self.ignored)} non-image item(s) ignored:")
            lines += [f"    {b['path']}: {b['reason']}" for b in self.ignored]
        return "\n".join(lines)


def _class_name(folder: str) -> str | None:
    name = folder.lower()
    name = CLASS_ALIASES.get(name, name)
    return name if name in CLASSES else None


def _discover(root: Path) -> tuple[str, list[tuple[str, str, Path]], list[dict], list[str]]:
    """Walk the layout: (layout, [(split, cls, file)], ignored, warnings)."""
    if not root.exists():
        raise DatasetNotFoundError(f"dataset folder not found: {root}. {GET_DATA_HELP}")
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset path is not a folder: {root}. {GET_DATA_HELP}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = {SPLIT_ALIASES[p.name.lower()]: p for p in subdirs if p.name.lower() in SPLIT_ALIASES}
    ignored: list[dict] = []
    warnings: list[str] = []
    if split_dirs:
        layout = "kaggle"
        containers = sorted(split_dirs.items())
        for p in subdirs:
            if p.name.lower() not in SPLIT_ALIASES:
                ignored.append({"path": p.name + "/", "reason": "not a Training/Testing folder"})
    elif any(_class_name(p.name) for p in subdirs):
        layout, containers = "folder", [("all", root)]
    else:
        raise DatasetNotFoundError(
            f"no class folders found in {root} (expected Training/ and Testing/ holding "
            f"{', '.join(CLASSES)}, or those class folders directly). {GET_DATA_HELP}")
    files: list[tuple[str, str, Path]] = []
    for split, container in containers:
        seen: set[str] = set()
        for entry in sorted(container.iterdir()):
            if entry.name.startswith("."):
                continue
            rel = entry.relative_to(root).as_posix()
            if not entry.is_dir():
                ignored.append({"path": rel, "reason": "file outside a class folder"})
                continue
            cls = _class_name(entry.name)
            if cls is None:
                n = sum(1 for f in entry.rglob("*") if f.is_file())
                warnings.append(f"{rel}/: unknown class folder ({n} files) skipped; "
                                f"expected one of {', '.join(CLASSES)}")
                continue
            if cls in seen:
                warnings.append(f"{rel}/: a second folder for class {cls!r}; its images are added to it")
            seen.add(cls)
            for f in sorted(entry.rglob("*")):
                if f.is_dir() or any(part.startswith(".") for part in f.relative_to(entry).parts):
                    continue
                if f.suffix.lower() not in IMAGE_EXTENSIONS:
                    ignored.append({"path": f.relative_to(root).as_posix(),
                                    "reason": f"not an image file extension ({f.suffix or 'none'})"})
                    continue
                files.append((split, cls, f))
        for cls in CLASSES:
            if cls not in seen:
                warnings.append(f"{split}: class folder {cls!r} is missing")
    counts = Counter((s, c) for s, c, _ in files)
    for split, _ in containers:
        for cls in CLASSES:
            if any(w.startswith(f"{split}: class folder {cls!r}") for w in warnings):
                continue
            if counts[(split, cls)] == 0:
                warnings.append(f"{split}/{cls}: no images")
    if not files:
        raise DatasetNotFoundError(f"no image files found under {root}. {GET_DATA_HELP}")
    return layout, files, ignored, warnings


def _check(path: Path) -> tuple[str, str | None, str | None]:
    """(kind, note, reason) for one file: kind is single-channel | rgb-gray | rgb-colour | bad."""
    try:
        arr, note = read_image(path)
        with Image.open(path) as im:
            bands = len(im.getbands())
    except BadImageError as exc:
        return "bad", None, exc.reason
    if bands == 1:
        return "single-channel", note, None
    gray = bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))
    return ("rgb-gray" if gray else "rgb-colour"), note, None


def _fingerprint(items: Iterable[Path], root: Path) -> str:
    h = hashlib.sha1(str(root.resolve()).encode())
    for f in items:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def scan(root: str | os.PathLike, *, show_progress: bool = True, use_cache: bool = True,
         workers: int | None = None) -> ScanReport:
    """Find every image under ``root``, decode each once, and report what can be used.

    Nothing is raised for a bad file: each one is named once in ``report.bad`` with its reason
    and skipped. A missing folder, a folder with no class folders or no images raises
    `DatasetNotFoundError` whose message says how to get the data.

    The result is cached (keyed by every file's path, size and modification time), so a second
    scan of an unchanged folder costs only a directory walk.
    """
    root = Path(root).expanduser().resolve()
    layout, files, ignored, warnings = _discover(root)
    key = _fingerprint((f for _, _, f in files), root)
    cache_file = paths.cache_root() / "scan" / f"{key}.json"
    if use_cache and cache_file.is_file():
        try:
            raw = json.loads(cache_file.read_text())
            recs = [ImageRecord(root=str(root), **r) for r in raw.pop("records")]
            return ScanReport(root=str(root), layout=layout, records=recs, ignored=ignored,
                              warnings=warnings, **raw)
        except (ValueError, TypeError, KeyError):
            pass  # an unreadable cache entry is rebuilt below
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(progress(pool.map(_check, [f for _, _, f in files]), total=len(files),
                                desc=f"scanning {root.name}", unit="img", disable=not show_progress))
    records, bad, converted, modes = [], [], [], Counter()
    for (split, cls, f), (kind, note, reason) in zip(files, results):
        rel = f.relative_to(root).as_posix()
        if kind == "bad":
            bad.append({"path": rel, "reason": reason})
            continue
        modes[kind] += 1
        if note:
            converted.append({"path": rel, "note": note})
        records.append(ImageRecord(rel=rel, split=split, cls=cls, root=str(root)))
    for split in sorted({s for s, _, _ in files}):
        for cls in CLASSES:
            n_files = sum(1 for s, c, _ in files if s == split and c == cls)
            n_ok = sum(1 for r in records if r.split == split and r.cls == cls)
            if n_files and not n_ok:
                warnings.append(f"{split}/{cls}: none of its {n_files} files is a usable image")
    report = ScanReport(str(root), layout, records, bad, converted, ignored, warnings, dict(modes))
    if use_cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            payload = {"records": [{k: v for k, v in asdict(r).items() if k != "root"} for r in records],
                       "bad": bad, "converted": converted, "modes": dict(modes)}
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload))
            tmp.replace(cache_file)
        except OSError:
            pass  # a read-only cache only costs speed
    return report


# ------------------------------------------------------------------------------------------------
# splits
def _stratified_split(records: Sequence[ImageRecord], fraction: float, seed: int,
                      groups: Sequence[int] | None = None) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split off ``fraction`` of the records, stratified by class (and by group when given)."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    if not records:
        return [], []
    labels = np.array([r.label for r in records])
    if groups is None:
        idx = np.arange(len(records))
        a, b = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    else:
        n_splits = max(2, round(1 / fraction))
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        a, b = next(sgkf.split(np.zeros(len(records)), labels, np.asarray(groups)))
    return [records[i] for i in sorted(a)], [records[i] for i in sorted(b)]


def make_splits(report: ScanReport, kind: str = "official", *, seed: int = 42, val_fraction: float = 0.1,
                holdout_fraction: float = 0.2, groups: dict[str, int] | None = None) -> dict[str, list[ImageRecord]]:
    """Split the scanned images into ``train`` / ``val`` / ``test`` (seeded, stratified by class).

    - ``official``: test = the Testing folder; val = ``val_fraction`` of Training; train = the rest.
    - ``paper``: all images merged; ``holdout_fraction`` held out and halved into val and test.
    - ``grouped``: like paper, but whole duplicate groups (``groups``: rel path -> group id, from
      `tumorlens.audit`) go to one side, so near-copies never straddle splits.
    """
    if kind not in ("official", "paper", "grouped"):
        raise ValueError(f"kind must be official, paper or grouped; got {kind!r}")
    recs = report.records
    if kind == "official":
        train_all = [r for r in recs if r.split == "Training"]
        test = [r for r in recs if r.split == "Testing"]
        if not train_all or not test:
            raise ValueError(f"the official split needs Training/ and Testing/ folders; {report.root} has "
                             f"{len(train_all)} Training and {len(test)} Testing images "
                             "(use split: paper for one folder of class folders)")
        train, val = _stratified_split(train_all, val_fraction, seed)
        return {"train": train, "val": val, "test": test}
    if kind == "grouped":
        if groups is None:
            raise ValueError("the grouped split needs duplicate groups (tumorlens.audit.audit(...).groups)")
        missing = [r.rel for r in recs if r.rel not in groups]
        if missing:
            raise ValueError(f"no duplicate group for {len(missing)} image(s), e.g. {missing[0]!r}: "
                             "the audit does not match this scan")
        g = [groups[r.rel] for r in recs]
        train, hold = _stratified_split(recs, holdout_fraction, seed, g)
        gh = [groups[r.rel] for r in hold]
        val, test = _stratified_split(hold, 0.5, seed + 1, gh)
        return {"train": train, "val": val, "test": test}
    train, hold = _stratified_split(recs, holdout_fraction, seed)
    val, test = _stratified_split(hold, 0.5, seed + 1)
    return {"train": train, "val": val, "test": test}


def labels_of(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.array([r.label for r in records], dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# decoded, resized arrays (cached)
def _load_one(args: tuple[Path, int]) -> np.ndarray:
    path, size = args
    arr, _ = read_image(path)
    return letterbox(arr, size)


def load_images(records: Sequence[ImageRecord], size: int, *, cache: bool = True,
                show_progress: bool = True, desc: str = "decoding") -> np.ndarray:
    """Decode and letterbox ``records`` to ``uint8 (N, size, size, 3)``.

    Arrays are cached under ``$TUMORLENS_CACHE/images`` keyed by every file's path, size and
    modification time and by ``size``; a later call with the same images reads the cache.
    Raises `BadImageError` naming the file if one became unreadable since it was scanned.
    """
    if not records:
        return np.zeros((0, size, size, 3), np.uint8)
    root = Path(records[0].root)
    files = [r.path for r in records]
    cache_file = None
    if cache:
        h = hashlib.sha1(f"{size}|".encode())
        h.update(_fingerprint(files, root).encode())
        cache_file = paths.cache_root() / "images" / f"{h.hexdigest()[:20]}-{size}px-{len(files)}.npy"
        if cache_file.is_file():
            try:
                arr = np.load(cache_file, mmap_mode="r")
                if arr.shape == (len(files), size, size, 3):
                    return np.asarray(arr)
            except (OSError, ValueError):
                pass
    out = np.empty((len(files), size, size, 3), np.uint8)
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        for i, a in enumerate(progress(pool.map(_load_one, [(f, size) for f in files]), total=len(files),
                                       desc=desc, unit="img", disable=not show_progress)):
            out[i] = a
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.stem + ".tmp.npy")
            np.save(tmp, out)
            tmp.replace(cache_file)
        except OSError:
            pass
    return out


# ------------------------------------------------------------------------------------------------
# normalisation and augmentation (the only places that know about pixel ranges)
#: How each backbone expects pixels (inputs are float 0..255 RGB):
#:   raw    unchanged 0..255 (EfficientNet-B0/Lite0 in Keras rescale inside the model)
#:   tf     scaled to [-1, 1] (MobileNetV2)
#:   caffe  RGB->BGR and ImageNet mean subtracted (VGG16)
#:   unit   scaled to [0, 1] (the ViT, trained from scratch)
NORMALISATIONS = ("raw", "tf", "caffe", "unit")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def normalise(x, mode: str):
    """Apply a backbone's pixel normalisation to float RGB ``(..., 3)`` in 0..255 (NumPy or tensor)."""
    if mode == "raw":
        return x
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "unit":
        return x / 255.0
    if mode == "caffe":
        bgr = x[..., ::-1]
        return bgr - np.asarray(_CAFFE_MEAN_BGR, dtype="float32")
    raise ValueError(f"mode must be one of {NORMALISATIONS}; got {mode!r}")


def augmentation(rotation: float = 0.05, zoom: float = 0.1, translation: float = 0.05,
                 contrast: float = 0.1, seed: int | None = None):
    """The paper's train-only augmentation as a Keras block (inputs float 0..255, ``(B, H, W, 3)``).

    Args:
        rotation: maximum rotation in radians (+-); converted to Keras' fraction of a full turn.
        zoom: maximum zoom in or out (fraction of the side).
        translation: maximum shift (fraction of the side), both axes.
        contrast: maximum contrast change (+-).
        seed: makes the random draws reproducible.
    """
    import keras

    layers = []
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation / (2 * np.pi), fill_mode="constant", seed=seed,
                                                  name="aug_rotation"))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=seed, name="aug_zoom"))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation, fill_mode="constant", seed=seed,
                                                     name="aug_translation"))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed, name="aug_contrast"))
    return keras.Sequential(layers, name="augmentation")


def make_dataset(images: np.ndarray, labels: np.ndarray | None = None, *, batch_size: int = 32,
                 training: bool = False, mode: str = "raw", augment=None, seed: int = 42):
    """A ``tf.data`` pipeline over cached uint8 images: (shuffle, augment if training), normalise, prefetch.

    Validation and test pipelines (``training=False``) are never shuffled nor augmented.
    """
    import tensorflow as tf

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
    ds = tf.data.Dataset.from_tensor_slices(images if labels is None else (images, labels))
    if training:
        ds = ds.shuffle(min(len(images), 4096), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def prep(x, *y):
        x = tf.cast(x, tf.float32)
        if training and augment is not None:
            x = augment(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0)
        x = normalise(x, mode)
        return (x, *y) if y else x

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------
# everything a run needs, from the settings
@dataclass
class Prepared:
    """The scanned dataset of a config, split, with the de-duplicated test subset.

    ``splits`` maps train / val / test to records; ``dedup_test`` lists the test paths (relative to
    the root) with no exact or near copy in train + val (see `tumorlens.audit`).
    """

    root: Path
    report: ScanReport
    splits: dict[str, list[ImageRecord]]
    dedup_test: list[str]
    audit: object  # tumorlens.audit.AuditReport
    image_size: int
    cache: bool = True

    def images(self, split: str, show_progress: bool = True) -> np.ndarray:
        return load_images(self.splits[split], self.image_size, cache=self.cache,
                           show_progress=show_progress, desc=f"decoding {split}")

    def labels(self, split: str) -> np.ndarray:
        return labels_of(self.splits[split])

    def dedup_mask(self) -> np.ndarray:
        keep = set(self.dedup_test)
        return np.array([r.rel in keep for r in self.splits["test"]], dtype=bool)


def prepare(cfg, *, show_progress: bool = True) -> Prepared:
    """Scan, audit and split the dataset a `tumorlens.config.Config` names.

    For ``data.source: phantoms`` the phantoms are generated first (once; they are cached).
    """
    from tumorlens.audit import audit

    d = cfg.data
    root = cfg.data_root
    if d.source == "phantoms":
        from tumorlens.phantoms import write_phantoms

        write_phantoms(root, size=d.image_size, train_per_class=d.phantoms.train_per_class,
                       test_per_class=d.phantoms.test_per_class, duplicates=d.phantoms.duplicates, seed=d.seed)
    report = scan(root, show_progress=show_progress)
    a = cfg.audit
    aud = audit(report, thumb_size=a.thumb_size, hash_distance=a.hash_distance, correlation=a.correlation,
                show_progress=show_progress)
    splits = make_splits(report, d.split, seed=d.seed, val_fraction=d.val_fraction,
                         holdout_fraction=d.holdout_fraction, groups=aud.groups)
    dedup = aud.dedup([r.rel for r in splits["test"]], [r.rel for r in splits["train"] + splits["val"]])
    return Prepared(Path(report.root), report, splits, dedup, aud, d.image_size, d.cache)


def split_counts(splits: dict[str, Sequence[ImageRecord]]) -> dict[str, dict[str, int]]:
    """``{split: {class: n, ..., "total": n}}`` for a `make_splits` result."""
    out = {}
    for name, recs in splits.items():
        c = Counter(r.cls for r in recs)
        out[name] = {k: c.get(k, 0) for k in CLASSES} | {"total": len(recs)}
    return out


def augment_views(image: np.ndarray, n: int = 8, *, rotation: float = 0.05, zoom: float = 0.1,
                  translation: float = 0.05, contrast: float = 0.1, seed: int = 0) -> np.ndarray:
    """``n`` augmented copies of one uint8 ``(H, W, 3)`` image, as uint8 ``(n, H, W, 3)`` (for previews)."""
    aug = augmentation(rotation, zoom, translation, contrast, seed=seed)
    batch = np.repeat(image[None].astype(np.float32), n, axis=0)
    out = np.asarray(aug(batch, training=True))
    return np.clip(out, 0, 255).astype(np.uint8)
