"""Everything a run needs from the data, from the settings: scan, audit, split, de-duplicated test subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.data.inventory import ImageRecord, ScanReport, read_scan_json, scan
from tumorlens.data.leakage import AuditReport, audit
from tumorlens.data.phantoms import write_phantoms
from tumorlens.data.pipeline import load_images
from tumorlens.data.splits import labels_of, make_splits, split_counts
from tumorlens.utils.files import read_json, write_json, write_text

__all__ = ["Prepared", "prepare", "DATA_FILES", "write_data_step", "read_data_step"]


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
    audit: AuditReport
    image_size: int
    cache: bool = True

    def images(self, split: str, show_progress: bool = True) -> np.ndarray:
        return load_images(
            self.splits[split], self.image_size, cache=self.cache, show_progress=show_progress, desc=f"decoding {split}"
        )

    def labels(self, split: str) -> np.ndarray:
        return labels_of(self.splits[split])

    def dedup_mask(self) -> np.ndarray:
        keep = set(self.dedup_test)
        return np.array([r.rel in keep for r in self.splits["test"]], dtype=bool)


def prepare(cfg, *, show_progress: bool = True) -> Prepared:
    """Scan, audit and split the dataset a `tumorlens.config.Config` names.

    For ``data.source: phantoms`` the phantoms are generated first (once; they are cached).
    """

    d = cfg.data
    root = cfg.data_root
    if d.source == "phantoms":
        write_phantoms(
            root,
            size=d.image_size,
            train_per_class=d.phantoms.train_per_class,
            test_per_class=d.phantoms.test_per_class,
            duplicates=d.phantoms.duplicates,
            seed=d.seed,
        )
    report = scan(root, show_progress=show_progress)
    a = cfg.audit
    aud = audit(
        report,
        thumb_size=a.thumb_size,
        hash_distance=a.hash_distance,
        correlation=a.correlation,
        show_progress=show_progress,
    )
    splits = make_splits(
        report,
        d.split,
        seed=d.seed,
        val_fraction=d.val_fraction,
        holdout_fraction=d.holdout_fraction,
        groups=aud.groups,
    )
    dedup = aud.dedup([r.rel for r in splits["test"]], [r.rel for r in splits["train"] + splits["val"]])
    return Prepared(Path(report.root), report, splits, dedup, aud, d.image_size, d.cache)


#: What the data step writes into its folder (and `collect` publishes in ``results/<profile>/data``).
DATA_FILES: tuple[str, ...] = ("scan.json", "audit.json", "dedup_test.csv", "splits.json")


def write_data_step(prep: Prepared, split_kind: str, out: str | Path) -> list[Path]:
    """Write the data step's record of ``prep`` into ``out``: the scan, the leakage audit, the
    de-duplicated test paths and the split counts (`DATA_FILES`, each versioned). Returns the files."""
    out = Path(out)
    return [
        write_json(out / "scan.json", prep.report.to_dict(), schema="scan"),
        write_json(out / "audit.json", prep.audit.to_dict(), schema="audit"),
        write_text(out / "dedup_test.csv", "path\n" + "".join(p + "\n" for p in prep.dedup_test)),
        write_json(out / "splits.json", {"kind": split_kind, "counts": split_counts(prep.splits)}, schema="splits"),
    ]


def read_data_step(folder: str | Path) -> dict:
    """What `write_data_step` wrote, checked: ``{"scan", "audit", "splits", "dedup_test"}``. A missing,
    stale or partial file raises an error naming it (never a default value in its place)."""
    folder = Path(folder)
    missing = [n for n in DATA_FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder.as_posix()}: the data step's {missing} are missing; rerun it and collect")
    lines = (folder / "dedup_test.csv").read_text().splitlines()
    if not lines or lines[0] != "path":
        raise ValueError(f"{(folder / 'dedup_test.csv').as_posix()}: expected a 'path' header, found {lines[:1]}")
    return {
        "scan": read_scan_json(folder / "scan.json"),
        "audit": read_json(folder / "audit.json", schema="audit"),
        "splits": read_json(folder / "splits.json", schema="splits"),
        "dedup_test": lines[1:],
    }
