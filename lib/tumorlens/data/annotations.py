"""Hand labels that describe the dataset rather than train on it: the view and apparent sequence of a
random sample of the Kaggle Training images (``data/annotations/kaggle_training_views.csv``; see the
README beside it), and their per-class mix with Wilson 95% intervals.

    rows = read_view_labels()                 # checked: classes, views, sequences, no repeats
    mix = view_sequence_mix(rows)             # {"glioma": {"n": 24, "view": {"axial": {...}}, ...}}
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from tumorlens import paths
from tumorlens.config import CLASSES

__all__ = ["VIEWS", "SEQUENCES", "view_labels_file", "read_view_labels", "view_sequence_mix", "wilson"]

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
SEQUENCES: tuple[str, ...] = ("T1", "T2", "FLAIR", "other")
_COLUMNS = ("class", "file", "view", "sequence")


def view_labels_file() -> Path:
    return paths.repo_root() / "data" / "annotations" / "kaggle_training_views.csv"


def read_view_labels(path: str | Path | None = None) -> list[dict]:
    """The labelled sample, each row checked: ``[{"class", "file", "view", "sequence"}, ...]``.
    A wrong column, value or a repeated file is a `ValueError` naming the file and the line."""
    path = Path(path) if path else view_labels_file()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != _COLUMNS:
            raise ValueError(f"{path}: expected the columns {', '.join(_COLUMNS)}; found {reader.fieldnames}")
        rows, seen = [], set()
        for line, row in enumerate(reader, start=2):
            for key, allowed in (("class", CLASSES), ("view", VIEWS), ("sequence", SEQUENCES)):
                if row[key] not in allowed:
                    raise ValueError(
                        f"{path}, line {line}: {key} must be one of {', '.join(allowed)}; got {row[key]!r}"
                    )
            if row["file"] in seen:
                raise ValueError(f"{path}, line {line}: {row['file']} is labelled twice")
            seen.add(row["file"])
            rows.append(dict(row))
    return rows


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion ``k / n`` (``(nan, nan)`` for ``n = 0``)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # k = 0 and k = n have exact bounds 0 and 1 (floating point would put them a hair inside)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def view_sequence_mix(rows: Sequence[dict]) -> dict[str, dict]:
    """Per class: ``n`` and, for each view and each sequence, ``{"k", "share", "lo", "hi"}``."""
    out = {}
    for cls in CLASSES:
        mine = [r for r in rows if r["class"] == cls]
        if not mine:
            continue
        entry: dict = {"n": len(mine)}
        for key, values in (("view", VIEWS), ("sequence", SEQUENCES)):
            entry[key] = {}
            for v in values:
                k = sum(r[key] == v for r in mine)
                lo, hi = wilson(k, len(mine))
                entry[key][v] = {"k": k, "share": k / len(mine), "lo": lo, "hi": hi}
        out[cls] = entry
    return out
