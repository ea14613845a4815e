"""Leakage audit: byte-identical and near-identical images within and across splits.

Two images are

- **exact** duplicates when their file bytes are identical (SHA-256), and
- **near** duplicates when their perceptual hashes (64-bit DCT hash of a grayscale thumbnail) are
  within ``hash_distance`` bits *and* the Pearson correlation of their thumbnails is at least
  ``correlation``. The correlation is invariant to brightness/contrast changes (re-contrasted
  copies), the hash to small re-crops and resampling; requiring both removes most pairs that
  only share a head outline — but not all: neighbouring slices and look-alike scans of different
  patients can pass both tests (the real data's report lists some pairs across classes), so the
  de-duplicated subset errs on the side of removing too much.

Duplicate pairs are joined into groups (connected components). From the groups the audit gives:
per class, how many Testing images have a copy in Training; a **de-duplicated test subset** (Testing
images with no exact or near copy among the training images, and one of each set of copies inside
Testing); and the groups
themselves, which `tumorlens.data.make_splits(..., "grouped")` uses so near-copies never straddle
splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.data.inventory import ImageRecord, ScanReport, dataset_identity
from tumorlens.data.io import letterbox, read_image
from tumorlens.errors import UsageError
from tumorlens.utils.files import hash_files, write_text
from tumorlens.utils.progress import progress

__all__ = [
    "Fingerprints",
    "fingerprints",
    "check_thresholds",
    "find_pairs",
    "cross_pairs",
    "AuditReport",
    "audit",
    "dedup_subset",
]

_AUDIT_VERSION = 1


@dataclass
class Fingerprints:
    sha256: list[str]
    phash: np.ndarray  # uint64 (N,)
    thumbs: np.ndarray  # float32 (N, T*T), each row zero-mean, unit-norm


def _phash(gray32: np.ndarray) -> np.uint64:
    dct = cv2.dct(gray32.astype(np.float32))
    low = dct[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def _one(args: tuple[Path, int]) -> tuple[str, np.uint64, np.ndarray]:
    path, t = args
    data = path.read_bytes()
    arr, _ = read_image(path)
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    g32 = letterbox(gray, 32).astype(np.float32)
    thumb = g32 if t == 32 else letterbox(gray, t).astype(np.float32)
    v = thumb.flatten() - thumb.mean()
    v /= np.linalg.norm(v) + 1e-6
    return hashlib.sha256(data).hexdigest(), _phash(g32), v.astype(np.float32)


def fingerprints(records: Sequence[ImageRecord], thumb_size: int = 32, show_progress: bool = True) -> Fingerprints:
    """SHA-256, perceptual hash and normalised thumbnail of each image."""
    with ThreadPoolExecutor(8) as pool:
        out = list(
            progress(
                pool.map(_one, [(r.path, thumb_size) for r in records]),
                total=len(records),
                desc="fingerprinting",
                unit="img",
                disable=not show_progress,
            )
        )
    return Fingerprints(
        [o[0] for o in out],
        np.array([o[1] for o in out], dtype=np.uint64),
        np.stack([o[2] for o in out]) if out else np.zeros((0, thumb_size**2), np.float32),
    )


def check_thresholds(hash_distance, correlation, thumb_size=32) -> None:
    """Refuse thresholds that would silently change what counts as a duplicate: ``hash_distance`` an integer
    >= 0 (bits of the 64-bit hash), ``correlation`` a finite number in (0, 1] (NaN would compare false and
    find no near duplicate at all), ``thumb_size`` an integer >= 8. `UsageError` names the value received."""
    if isinstance(hash_distance, bool) or not isinstance(hash_distance, (int, np.integer)) or hash_distance < 0:
        raise UsageError(f"hash_distance must be an integer >= 0; received hash_distance={hash_distance!r}")
    if (
        isinstance(correlation, bool)
        or not isinstance(correlation, (int, float, np.floating, np.integer))
        or not np.isfinite(correlation)
        or not 0 < correlation <= 1
    ):
        raise UsageError(f"correlation must be a finite number in (0, 1]; received correlation={correlation!r}")
    if isinstance(thumb_size, bool) or not isinstance(thumb_size, (int, np.integer)) or thumb_size < 8:
        raise UsageError(f"thumb_size must be an integer >= 8; received thumb_size={thumb_size!r}")


def find_pairs(
    fp: Fingerprints, hash_distance: int, correlation: float, chunk: int = 1024
) -> list[tuple[int, int, str, int, float]]:
    """All duplicate pairs ``(i, j, kind, hamming, corr)`` with ``i < j``; kind is exact | near."""
    check_thresholds(hash_distance, correlation)
    n = len(fp.sha256)
    pairs: dict[tuple[int, int], tuple[str, int, float]] = {}
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(fp.sha256):
        by_sha[h].append(i)
    for idx in by_sha.values():
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                pairs[(idx[a], idx[b])] = ("exact", 0, 1.0)
    hashes = fp.phash
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        ham = np.bitwise_count(hashes[s:e, None] ^ hashes[None, :]).astype(np.int16)
        corr = fp.thumbs[s:e] @ fp.thumbs.T
        ii, jj = np.nonzero((ham <= hash_distance) & (corr >= correlation))
        for i, j in zip(ii + s, jj):
            if i < j and (i, j) not in pairs:
                pairs[(int(i), int(j))] = ("near", int(ham[i - s, j]), float(corr[i - s, j]))
    return sorted((i, j, k, h, c) for (i, j), (k, h, c) in pairs.items())


def cross_pairs(
    a: Fingerprints, b: Fingerprints, hash_distance: int, correlation: float, chunk: int = 1024
) -> list[tuple[int, int, str, int, float]]:
    """Duplicate pairs *between* two sets, by `find_pairs`' rule: ``(i in a, j in b, kind, hamming, corr)``
    for every exact (same bytes) or near (hash within ``hash_distance`` bits and thumbnail correlation
    at least ``correlation``) match -- e.g. another release's images against a training split."""
    pairs: dict[tuple[int, int], tuple[str, int, float]] = {}
    by_sha: dict[str, list[int]] = defaultdict(list)
    for j, h in enumerate(b.sha256):
        by_sha[h].append(j)
    for i, h in enumerate(a.sha256):
        for j in by_sha.get(h, ()):
            pairs[(i, j)] = ("exact", 0, 1.0)
    for s in range(0, len(a.sha256), chunk):
        e = min(len(a.sha256), s + chunk)
        ham = np.bitwise_count(a.phash[s:e, None] ^ b.phash[None, :]).astype(np.int16)
        corr = a.thumbs[s:e] @ b.thumbs.T
        for i, j in zip(*np.nonzero((ham <= hash_distance) & (corr >= correlation))):
            key = (int(i + s), int(j))
            if key not in pairs:
                pairs[key] = ("near", int(ham[i, j]), float(corr[i, j]))
    return sorted((i, j, k, h, c) for (i, j), (k, h, c) in pairs.items())


def _groups(n: int, pairs: Sequence[tuple]) -> np.ndarray:
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, *_ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])


def dedup_subset(test: Sequence[str], seen: Sequence[str], neighbours: dict[str, set[str]]) -> list[str]:
    """The test paths kept once every image with an exact or near copy among ``seen`` (the images a
    model was trained or selected on) is removed, and only the first of each set of copies inside
    the test set is kept. ``neighbours`` maps a path to the paths it duplicates (`AuditReport.neighbours`)."""
    seen_set = set(seen)
    kept: list[str] = []
    kept_set: set[str] = set()
    for r in test:
        nb = neighbours.get(r, set())
        if nb & seen_set or nb & kept_set:
            continue
        kept.append(r)
        kept_set.add(r)
    return kept


@dataclass
class AuditReport:
    root: str
    params: dict
    records: list[ImageRecord]
    pairs: list[tuple[int, int, str, int, float]]
    groups: dict[str, int] = field(default_factory=dict)  # rel -> group id

    # -------------------------------------------------------------------------------------
    def neighbours(self) -> dict[str, set[str]]:
        """Path -> the paths it is an exact or near duplicate of (direct pairs, not whole groups)."""
        nb: dict[str, set[str]] = defaultdict(set)
        for i, j, *_ in self.pairs:
            nb[self.records[i].rel].add(self.records[j].rel)
            nb[self.records[j].rel].add(self.records[i].rel)
        return nb

    def dedup(self, test: Sequence[str], seen: Sequence[str]) -> list[str]:
        """`dedup_subset` for any split, e.g. ``dedup([r.rel for r in test], [r.rel for r in train + val])``."""
        return dedup_subset(test, seen, self.neighbours())

    def dedup_test(self) -> list[str]:
        """The de-duplicated Testing subset of the official split (paths relative to the root)."""
        test = [r.rel for r in self.records if r.split == "Testing"]
        seen = [r.rel for r in self.records if r.split == "Training"]
        return self.dedup(test, seen)

    def sensitivity(self) -> list[dict]:
        """Testing images with a copy in Training under the audit's rule and stricter ones."""
        h0, c0 = self.params["hash_distance"], self.params["correlation"]
        rules = [
            ("exact bytes only", -1, 2.0),
            ("hash <= 4 and corr >= 0.97", 4, 0.97),
            ("hash <= 8 and corr >= 0.95", 8, 0.95),
            (f"hash <= {h0} and corr >= {c0} (used)", h0, c0),
        ]
        out = []
        for name, h, c in rules:
            if h > h0 or (c < c0 and h >= 0):
                continue
            hit = set()
            for i, j, kind, ham, corr in self.pairs:
                if kind == "exact" or (ham <= h and corr >= c):
                    for x, y in ((i, j), (j, i)):
                        if self.records[x].split == "Testing" and self.records[y].split == "Training":
                            hit.add(x)
            out.append({"rule": name, "testing_with_copy_in_training": len(hit)})
        return out

    def to_dict(self, examples: int = 10) -> dict:
        recs = self.records
        pair_counts: Counter = Counter()
        cross_class = 0
        for i, j, kind, *_ in self.pairs:
            a, b = sorted((recs[i].split, recs[j].split))
            pair_counts[(kind, f"{a}-{b}")] += 1
            cross_class += recs[i].cls != recs[j].cls
        # Testing images with an exact / near copy in Training, per class
        partner: dict[int, set[str]] = defaultdict(set)
        for i, j, kind, *_ in self.pairs:
            for x, y in ((i, j), (j, i)):
                if recs[x].split == "Testing" and recs[y].split == "Training":
                    partner[x].add(kind)
        leak = {
            c: {"testing": 0, "exact_in_training": 0, "near_in_training": 0, "any_in_training": 0, "dedup_kept": 0}
            for c in CLASSES
        }
        for k, r in enumerate(recs):
            if r.split != "Testing":
                continue
            d = leak[r.cls]
            d["testing"] += 1
            kinds = partner.get(k, set())
            d["exact_in_training"] += "exact" in kinds
            d["near_in_training"] += "near" in kinds and "exact" not in kinds
            d["any_in_training"] += bool(kinds)
        kept = set(self.dedup_test())
        for r in recs:
            if r.rel in kept:
                leak[r.cls]["dedup_kept"] += 1
        total = {k: sum(d[k] for d in leak.values()) for k in next(iter(leak.values()))}
        sizes = Counter(self.groups.values())
        ex = []
        cross = [p for p in self.pairs if recs[p[0]].split != recs[p[1]].split]
        for i, j, kind, ham, corr in (
            cross[: examples // 2] + [p for p in cross if p[2] == "near"][: examples - examples // 2]
        ):
            ex.append({"a": recs[i].rel, "b": recs[j].rel, "kind": kind, "hamming": ham, "correlation": round(corr, 4)})
        return {
            "dataset": dataset_identity(self.root, recs),
            "params": self.params,
            "n_images": len(recs),
            "sensitivity": self.sensitivity(),
            "pairs": {f"{k}:{s}": v for (k, s), v in sorted(pair_counts.items())},
            "n_pairs": len(self.pairs),
            "cross_class_pairs": cross_class,
            "n_groups": len(sizes),
            "n_images_in_duplicate_groups": sum(v for v in sizes.values() if v > 1),
            "largest_group": max(sizes.values()) if sizes else 0,
            "testing_vs_training": {"per_class": leak, "total": total},
            "dedup_test_size": len(kept),
            "examples": ex,
        }


def audit(
    report: ScanReport,
    *,
    thumb_size: int = 32,
    hash_distance: int = 12,
    correlation: float = 0.90,
    use_cache: bool = True,
    show_progress: bool = True,
) -> AuditReport:
    """Find duplicate pairs and groups among all images of a scan (cached by content and settings).

    Raises `UsageError` for thresholds outside their range (`check_thresholds`)."""
    check_thresholds(hash_distance, correlation, thumb_size)
    recs = report.records
    params = {
        "thumb_size": thumb_size,
        "hash_distance": hash_distance,
        "correlation": correlation,
        "version": _AUDIT_VERSION,
    }
    h = hash_files(
        hashlib.sha1(json.dumps(params, sort_keys=True).encode()),
        ((f"{r.rel}|{r.split}|{r.cls}", r.path) for r in recs),
    )
    cache_file = paths.cache_root() / "audit" / f"{h.hexdigest()[:20]}.json"
    pairs = None
    if use_cache and cache_file.is_file():
        try:
            pairs = [tuple(p) for p in json.loads(cache_file.read_text())["pairs"]]
        except (ValueError, KeyError):
            pairs = None
    if pairs is None:
        fp = fingerprints(recs, thumb_size, show_progress)
        pairs = find_pairs(fp, hash_distance, correlation)
        if use_cache:
            try:
                write_text(cache_file, json.dumps({"pairs": pairs}))
            except OSError:
                pass
    g = _groups(len(recs), pairs)
    groups = {r.rel: int(g[i]) for i, r in enumerate(recs)}
    return AuditReport(report.root, params, recs, pairs, groups)
