"""Scan a dataset folder: find every image, decode each once, name every bad file, keep the rest.

Nothing is skipped without a word: besides bad images, every entry not read is listed with its reason
(``ignored``): files of other kinds (DICOM slices included: scan and external read image files), hidden
entries, symbolic links to folders (not followed: a link may loop or lead out of the dataset), folders
that cannot be read, broken links (`walk_files`).

Layouts read (class folders ``glioma``, ``meningioma``, ``notumor`` — or ``no_tumor`` —, ``pituitary``)::

    ROOT/Training/<class>/*  and  ROOT/Testing/<class>/*     the Kaggle layout ("kaggle")
    ROOT/<class>/*                                           one folder of class folders ("folder")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.data.io import DECODE_VERSION, IMAGE_EXTENSIONS, BadImageError, is_dicom, read_image
from tumorlens.errors import DatasetNotFoundError
from tumorlens.utils.files import hash_files, read_json, write_text
from tumorlens.utils.progress import progress
from tumorlens.utils.schema import SchemaError

__all__ = [
    "GET_DATA_HELP",
    "CHANNEL_KINDS",
    "DatasetNotFoundError",
    "ImageRecord",
    "ScanReport",
    "scan",
    "fingerprint",
    "walk_files",
    "dataset_identity",
    "read_scan_json",
]


#: Folder names other datasets use for the same four classes.
CLASS_ALIASES = {
    "no_tumor": "notumor",
    "no_tumour": "notumor",
    "notumour": "notumor",
    "no": "notumor",
    "glioma_tumor": "glioma",
    "meningioma_tumor": "meningioma",
    "pituitary_tumor": "pituitary",
}


SPLIT_ALIASES = {"training": "Training", "train": "Training", "testing": "Testing", "test": "Testing"}


GET_DATA_HELP = (
    "Get the Kaggle 'Brain Tumor MRI Dataset' (Masoud Nickparvar, CC0): run `make data` "
    "(or `tumorlens data fetch`, which needs Kaggle credentials and network), or download it "
    "by hand from https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset and "
    "unpack it so that ROOT/Training/<class>/ and ROOT/Testing/<class>/ exist; then point "
    "TUMORLENS_DATA at ROOT (or set data.root in _config.yml). See data/README.md. "
    "To try the project without it, use the smoke profile (synthetic phantoms)."
)


# a folder
@dataclass(frozen=True)
class ImageRecord:
    """One usable image: where it is, its split in the source layout and its class."""

    rel: str  # path relative to the dataset root, with forward slashes
    split: str  # Training | Testing | all
    cls: str  # one of CLASSES
    root: str  # the dataset root

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
    bad: list[dict] = field(default_factory=list)  # {"path", "reason"}: skipped
    converted: list[dict] = field(default_factory=list)  # {"path", "note"}: kept
    ignored: list[dict] = field(default_factory=list)  # {"path", "reason"}: not image files / not in a class
    warnings: list[str] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)  # counts by CHANNEL_KINDS

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            out.setdefault(r.split, {c: 0 for c in CLASSES})[r.cls] += 1
        for d in out.values():
            d["total"] = sum(d[c] for c in CLASSES)
        return out

    def dataset(self) -> dict:
        """`dataset_identity` of this folder."""
        return dataset_identity(self.root, self.records)

    def to_dict(self) -> dict:
        """The report as `scan.json` holds it (schema ``scan``): paths relative to the dataset root."""
        return {
            "dataset": self.dataset(),
            "layout": self.layout,
            "n_images": len(self.records),
            "counts": self.counts(),
            "channels": self.modes,
            "n_bad": len(self.bad),
            "bad": self.bad,
            "converted": self.converted,
            "ignored": self.ignored,
            "warnings": self.warnings,
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


def dataset_identity(root: str | os.PathLike, records: Iterable[ImageRecord]) -> dict:
    """Which dataset this is, without naming where it lies on this machine (what results files record):
    its folder's name, its usable images and a fingerprint of their file list (relative paths with classes).
    Two copies of the same dataset anywhere give the same identity; adding or moving one image changes it."""
    records = list(records)
    listing = "".join(sorted(f"{r.rel}\t{r.cls}\n" for r in records))
    return {
        "name": Path(root).name,
        "n_images": len(records),
        "fingerprint": hashlib.sha256(listing.encode()).hexdigest()[:16],
    }


#: How `scan` classifies an image's channels (the keys of ``ScanReport.modes`` / ``scan.json["channels"]``).
CHANNEL_KINDS: tuple[str, ...] = ("single-channel", "rgb-gray", "rgb-colour")


def read_scan_json(path: str | os.PathLike) -> dict:
    """A saved ``scan.json``, checked against what this version of `scan` writes: a file from another
    version (other channel names, missing keys) raises ValueError naming the file, never a silent default."""
    d = read_json(path, schema="scan")
    unknown = sorted(set(d["channels"]) - set(CHANNEL_KINDS))
    if unknown:
        raise SchemaError(
            f"{Path(path).as_posix()}: written by another version of `tumorlens data scan` "
            f"(unknown channel kinds {unknown}); rerun the data step "
            "(tumorlens run --profile P --only 01_data) and collect"
        )
    return d


def _class_name(folder: str) -> str | None:
    name = folder.lower()
    name = CLASS_ALIASES.get(name, name)
    return name if name in CLASSES else None


def walk_files(folder: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every file under ``folder`` (recursively, sorted by path) and every entry not walked, with why.

    Skipped, each with its reason: hidden entries (a name starting with ``.``; a hidden folder once, not its
    contents), symbolic links to folders (not followed: they can loop, or lead outside the folder given),
    folders that cannot be listed (permissions, I/O errors), and broken or looping symbolic links. Links to
    files are followed (they are returned as found). The folder itself must be listable (else OSError).
    """
    folder = Path(folder)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    pending = [folder]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as exc:
            if here == folder:
                raise
            why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            skipped.append((here, f"folder not readable ({why}): its files were not looked at"))
            continue
        for e in entries:
            p = here / e.name
            if e.name.startswith("."):
                kind = "folder" if e.is_dir(follow_symlinks=False) else "file"
                skipped.append((p, f"hidden {kind} (the name starts with '.'): skipped"))
                continue
            try:
                is_link = e.is_symlink()
                if is_link and not p.exists():  # dangling, or a loop: named, never a crash
                    skipped.append((p, "broken symbolic link (no target, or a loop)"))
                    continue
                is_dir = e.is_dir()
            except OSError as exc:
                skipped.append((p, f"not readable ({exc.strerror or exc})"))
                continue
            if is_link and is_dir:
                skipped.append((p, "symbolic link to a folder: not followed (pass its target, or copy the folder in)"))
            elif is_dir:
                pending.append(p)
            else:
                files.append(p)
    return sorted(files), sorted(skipped)


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
        for f in sorted(root.iterdir()):
            if not f.name.startswith(".") and not f.is_dir():
                ignored.append({"path": f.name, "reason": "file at the dataset root, outside Training/ and Testing/"})
    elif any(_class_name(p.name) for p in subdirs):
        layout, containers = "folder", [("all", root)]
    else:
        raise DatasetNotFoundError(
            f"no class folders found in {root} (expected Training/ and Testing/ holding "
            f"{', '.join(CLASSES)}, or those class folders directly). {GET_DATA_HELP}"
        )
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
                warnings.append(
                    f"{rel}/: unknown class folder ({n} files) skipped; expected one of {', '.join(CLASSES)}"
                )
                continue
            if cls in seen:
                warnings.append(f"{rel}/: a second folder for class {cls!r}; its images are added to it")
            seen.add(cls)
            try:
                found, skipped = walk_files(entry)
            except OSError as exc:
                why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
                ignored.append({"path": rel + "/", "reason": f"class folder not readable ({why}): not scanned"})
                continue
            for f, reason in skipped:
                ignored.append({"path": f.relative_to(root).as_posix(), "reason": reason})
            for f in found:
                if f.suffix.lower() not in IMAGE_EXTENSIONS:
                    reason = (
                        "a DICOM file: `data scan` and `external` read image files (JPEG, PNG, ...); "
                        "`tumorlens predict` reads DICOM"
                        if is_dicom(f)
                        else f"not an image file extension ({f.suffix or 'none'})"
                    )
                    ignored.append({"path": f.relative_to(root).as_posix(), "reason": reason})
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


def fingerprint(files: Iterable[Path], root: Path) -> str:
    """A short key for a set of files under ``root``: their relative paths, sizes and modification times."""
    h = hashlib.sha1(f"{root.resolve()}|decode-v{DECODE_VERSION}".encode())  # a decoder change re-decodes
    return hash_files(h, ((f.relative_to(root).as_posix(), f) for f in files)).hexdigest()[:20]


def scan(
    root: str | os.PathLike, *, show_progress: bool = True, use_cache: bool = True, workers: int | None = None
) -> ScanReport:
    """Find every image under ``root``, decode each once, and report what can be used.

    Nothing is raised for a bad file: each one is named once in ``report.bad`` with its reason
    and skipped. A missing folder, a folder with no class folders or no images raises
    `DatasetNotFoundError` whose message says how to get the data.

    The result is cached (keyed by every file's path, size and modification time), so a second
    scan of an unchanged folder costs only a directory walk.
    """
    root = Path(root).expanduser().resolve()
    layout, files, ignored, warnings = _discover(root)
    key = fingerprint((f for _, _, f in files), root)
    cache_file = paths.cache_root() / "scan" / f"{key}.json"
    if use_cache and cache_file.is_file():
        try:
            raw = json.loads(cache_file.read_text())
            recs = [ImageRecord(root=str(root), **r) for r in raw.pop("records")]
            return ScanReport(root=str(root), layout=layout, records=recs, ignored=ignored, warnings=warnings, **raw)
        except (ValueError, TypeError, KeyError):
            pass  # an unreadable cache entry is rebuilt below
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            progress(
                pool.map(_check, [f for _, _, f in files]),
                total=len(files),
                desc=f"scanning {root.name}",
                unit="img",
                disable=not show_progress,
            )
        )
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
            payload = {
                "records": [{k: v for k, v in asdict(r).items() if k != "root"} for r in records],
                "bad": bad,
                "converted": converted,
                "modes": dict(modes),
            }
            write_text(cache_file, json.dumps(payload))
        except OSError:
            pass  # a read-only cache only costs speed
    return report
