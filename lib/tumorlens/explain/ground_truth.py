"""Ground truth for the weak masks: expert masks in the BRISC 2025 layout, or the phantoms' own masks.

Masks are only ever used for scoring and for choosing thresholds on a tuning part; nothing is trained on them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.data.io import letterbox, read_image
from tumorlens.utils.progress import progress

__all__ = [
    "MaskItem",
    "brisc_items",
    "phantom_items",
    "split_items",
    "default_mask_root",
    "mask_items_for",
    "load_lesion_masks",
]


_BRISC = re.compile(r"brisc2025_(?P<split>\w+?)_(?P<id>\d+)_(?P<cls>gl|me|pi|no|nt)_(?P<view>ax|co|sa)_t1$")


_BRISC_CLASS = {"gl": "glioma", "me": "meningioma", "pi": "pituitary", "no": "notumor", "nt": "notumor"}


@dataclass(frozen=True)
class MaskItem:
    image: Path
    mask: Path
    cls: str
    view: str = ""

    @property
    def id(self) -> str:
        return self.image.stem


def brisc_items(root: str | Path) -> list[MaskItem]:
    """Image/mask pairs of a BRISC 2025 segmentation folder (``images/*.jpg``, ``masks/<stem>.png``)."""
    root = Path(root)
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise FileNotFoundError(f"{root} must hold images/ and masks/ (the BRISC 2025 segmentation layout)")
    items = []
    for img in sorted((root / "images").iterdir()):
        m = _BRISC.match(img.stem)
        mask = root / "masks" / f"{img.stem}.png"
        if m and mask.is_file():
            items.append(MaskItem(img, mask, _BRISC_CLASS[m["cls"]], m["view"]))
    if not items:
        raise FileNotFoundError(f"no BRISC image/mask pairs found under {root}")
    return items


def phantom_items(root: str | Path, split: str = "Testing") -> list[MaskItem]:
    """The tumour phantoms of ``split`` with their ground-truth masks (see `tumorlens.phantoms`)."""
    root = Path(root)
    items = []
    for cls in CLASSES:
        if cls == "notumor":
            continue
        for img in sorted((root / split / cls).glob("*.png")):
            items.append(MaskItem(img, root / "masks" / split / cls / img.name, cls, "ax"))
    return items


def split_items(
    items: Sequence[MaskItem], tune_fraction: float = 0.5, seed: int = 42
) -> tuple[list[MaskItem], list[MaskItem]]:
    """Split into a tuning part and a reporting part, stratified by class (seeded)."""
    from sklearn.model_selection import train_test_split

    labels = [it.cls for it in items]
    a, b = train_test_split(list(range(len(items))), train_size=tune_fraction, random_state=seed, stratify=labels)
    return [items[i] for i in sorted(a)], [items[i] for i in sorted(b)]


def default_mask_root(cfg) -> Path | None:
    """Where the expert masks are: ``segment.masks``, ``$TUMORLENS_MASKS``, or the development copy
    ``../shared/data/brisc2025-seg-dev`` beside the repository; None when there are none."""

    for cand in (
        cfg.segment.masks,
        os.environ.get("TUMORLENS_MASKS"),
        paths.repo_root().parent / "shared" / "data" / "brisc2025-seg-dev",
    ):
        if cand and (Path(cand) / "masks").is_dir():
            return Path(cand)
    return None


def mask_items_for(cfg) -> tuple[str, list[MaskItem]]:
    """(description, items) of the ground truth a config is scored against; no items when absent."""
    if cfg.data.source == "phantoms":
        root = cfg.data_root
        return "phantoms (synthetic ground truth)", phantom_items(root) if (root / "masks").is_dir() else []
    root = default_mask_root(cfg)
    if root is None:
        return "BRISC 2025 expert masks (not found)", []
    return f"BRISC 2025 expert masks ({root.name})", brisc_items(root)


def load_lesion_masks(root: str | os.PathLike, size: int, *, show_progress: bool = True):
    """``(ids, images uint8 (N, S, S, 3), masks bool (N, S, S), y, views)`` of a BRISC-layout folder
    (``images/``, ``masks/``), letterboxed to ``size`` (the masks by nearest neighbour)."""
    items = brisc_items(root)
    images, masks = [], []
    for it in progress(items, total=len(items), desc="reading masks", unit="img", disable=not show_progress):
        arr, _ = read_image(it.image)
        m = cv2.imread(str(it.mask), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise ValueError(f"{it.mask}: not a readable mask image")
        m = cv2.resize(m, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_NEAREST) > 127
        images.append(letterbox(arr, size))
        masks.append(letterbox(m.astype(np.uint8) * 255, size) > 127)
    y = np.array([CLASSES.index(it.cls) for it in items])
    return [it.id for it in items], np.stack(images), np.stack(masks), y, [it.view for it in items]
