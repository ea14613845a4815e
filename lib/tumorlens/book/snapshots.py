"""Figures that need the scans, rendered once when the data step runs and published with the results.

A book built without the dataset still shows what the classes look like, what augmentation does and
which pairs the leakage audit calls duplicates: the data step writes small JPEGs into
``<run_dir>/figures/`` (collected into ``results/<profile>/data/figures/``), and the data chapter shows
them. The Kaggle dataset is public domain (CC0), so its images may be published.

    files = write_data_figures(prep, cfg, audit_dict, Path("runs/cpu/data/figures"), seed=42)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens.book.text import SOURCE_NOTE
from tumorlens.config import CLASSES
from tumorlens.data.io import letterbox, read_image
from tumorlens.data.pipeline import augment_views
from tumorlens.experiments.figures import duplicate_copies, write_duplicates
from tumorlens.explain.gallery import image_sheet, jpeg_bytes
from tumorlens.utils.files import atomic_path

__all__ = ["DATA_FIGURES", "SOURCE_NOTE", "image_sheet", "write_data_figures", "write_view_figure"]

#: The data chapter's published figures: file name -> caption.
DATA_FIGURES = {
    "examples.jpg": "Four training images per class",
    "augmentation.jpg": "Eight augmented views of one training image",
    "duplicates.jpg": "Testing images with a copy in Training: each Testing image once, beside its closest Training "
    "copy of the same class (exact copies first, then near copies)",
}


def _write(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path, ".jpg") as tmp:
        tmp.write_bytes(jpeg_bytes(rgb, quality=82))


def write_view_figure(root: str | Path, rows: Sequence[dict], out: str | Path, per_class: int = 4) -> Path | None:
    """Render labelled Training images (`tumorlens.data.annotations`) into ``out`` (a JPEG): a row per
    class of up to ``per_class`` images of different view and sequence pairs, each titled with them. None when
    none of the labelled files is under ``root`` (e.g. the phantoms)."""
    images, titles = [], []
    for cls in CLASSES:
        shown = set()
        for r in rows:
            pair = (r["view"], r["sequence"])
            if r["class"] != cls or pair in shown or len(shown) == per_class:
                continue
            try:
                img = letterbox(read_image(Path(root) / r["file"])[0], 128)
            except (OSError, ValueError):
                continue  # not in this dataset copy
            shown.add(pair)
            images.append(img)
            titles.append(f"{cls}: {pair[0]}, {pair[1]}")
        if shown:  # one row per class: pad it with blank tiles
            images += [np.zeros((128, 128, 3), np.uint8)] * (per_class - len(shown))
            titles += [""] * (per_class - len(shown))
    if not images:
        return None
    path = Path(out)
    _write(path, image_sheet(images, titles, cols=per_class, tile=160))
    return path


def write_data_figures(prep, cfg, audit: dict, out: str | Path, seed: int, pairs: int = 6) -> dict[str, str]:
    """Render the data chapter's figures from the prepared dataset into ``out``: ``{file: caption}``.

    Examples: the first four training images of each class (in split order); augmentation: eight
    views of the first one, with the config's augmentation; duplicates: up to ``pairs`` Testing images
    with their closest Training copy of the same class (`tumorlens.experiments.figures.duplicate_copies`),
    titled with the match kind, hash distance and correlation. ``audit`` (the audit as a dict) is kept
    for the callers; the copies come from ``prep.audit``.
    """
    out = Path(out)
    size = cfg.data.image_size
    train, labels = prep.images("train", show_progress=False), prep.labels("train")
    picks = [int(i) for c in range(len(CLASSES)) for i in np.flatnonzero(labels == c)[:4]]
    _write(out / "examples.jpg", image_sheet(train[picks], [CLASSES[labels[i]] for i in picks], cols=4))
    a = cfg.augment
    views = augment_views(
        train[picks[0]], 8, rotation=a.rotation, zoom=a.zoom, translation=a.translation, contrast=a.contrast, seed=seed
    )
    _write(out / "augmentation.jpg", image_sheet(list(views), [f"view {i + 1}" for i in range(8)], cols=4))
    files = {"examples.jpg": DATA_FIGURES["examples.jpg"], "augmentation.jpg": DATA_FIGURES["augmentation.jpg"]}
    report = getattr(prep, "audit", None)
    if report is not None and write_duplicates(
        prep.root, duplicate_copies(report, pairs), out / "duplicates.jpg", size
    ):
        files["duplicates.jpg"] = DATA_FIGURES["duplicates.jpg"]
    return files
