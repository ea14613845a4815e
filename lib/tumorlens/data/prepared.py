"""Everything a run needs from the data, from the settings: scan, audit, split, de-duplicated test subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.data.inventory import ImageRecord, ScanReport, scan
from tumorlens.data.leakage import AuditReport, audit
from tumorlens.data.phantoms import write_phantoms
from tumorlens.data.pipeline import load_images
from tumorlens.data.splits import labels_of, make_splits

__all__ = ["Prepared", "prepare"]


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
