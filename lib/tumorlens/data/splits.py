"""Train / validation / test splits: the official one, the paper's, and one that keeps duplicate groups whole."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.inventory import ImageRecord, ScanReport

__all__ = ["make_splits", "labels_of", "split_counts"]


# splits
def _stratified_split(
    records: Sequence[ImageRecord], fraction: float, seed: int, groups: Sequence[int] | None = None
) -> tuple[list[ImageRecord], list[ImageRecord]]:
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


def make_splits(
    report: ScanReport,
    kind: str = "official",
    *,
    seed: int = 42,
    val_fraction: float = 0.1,
    holdout_fraction: float = 0.2,
    groups: dict[str, int] | None = None,
) -> dict[str, list[ImageRecord]]:
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
            raise ValueError(
                f"the official split needs Training/ and Testing/ folders; {report.root} has "
                f"{len(train_all)} Training and {len(test)} Testing images "
                "(use split: paper for one folder of class folders)"
            )
        train, val = _stratified_split(train_all, val_fraction, seed)
        return {"train": train, "val": val, "test": test}
    if kind == "grouped":
        if groups is None:
            raise ValueError("the grouped split needs duplicate groups (tumorlens.audit.audit(...).groups)")
        missing = [r.rel for r in recs if r.rel not in groups]
        if missing:
            raise ValueError(
                f"no duplicate group for {len(missing)} image(s), e.g. {missing[0]!r}: "
                "the audit does not match this scan"
            )
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


def split_counts(splits: dict[str, Sequence[ImageRecord]]) -> dict[str, dict[str, int]]:
    """``{split: {class: n, ..., "total": n}}`` for a `make_splits` result."""
    out = {}
    for name, recs in splits.items():
        c = Counter(r.cls for r in recs)
        out[name] = {k: c.get(k, 0) for k in CLASSES} | {"total": len(recs)}
    return out
