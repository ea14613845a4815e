"""Predict (and explain, and outline) a user's own scans: JPEG, PNG and DICOM slices.

    tumorlens predict scans/ --model runs/cpu/efficientnet_lite0+sbr/seed-42 --segment --out out/

Per image the output folder receives ``<name>.json`` (class, probabilities, model id, the input guard's
verdict), with ``--explain`` ``<name>_cam.png`` (the class activation map as an overlay) and with
``--segment`` ``<name>_mask.png`` (the weak tumour mask, 255 = tumour); plus ``predictions.csv`` for all
images (input -> output name, class, probabilities, ``guard``: valid | warning, and why) and
``problems.csv`` for every file that could not be read or was skipped, with the reason.

**Output folder.** Nothing is ever written next to or over an input, nor outside ``--out``: each result's
name comes from the input's path with every part made safe (`safe_part`: no ``.``/``..``/empty or hidden
part, no separator or control character, at most `MAX_PART_BYTES` bytes -- longer names are cut and end
in a hash of the whole) and unique even case-insensitively and after Unicode normalisation (`find_inputs`).
A run holds ``--out`` by a lock file naming its process (`out_lock`; a second run into it is refused,
a lock left by a dead process is taken over), writes ``INCOMPLETE`` first and removes it only when every
input has its row, and records each file it writes in a journal, by which ``--overwrite`` clears an
earlier run's results (and nothing else) before writing.

**Input guard.** Each image is checked (`tumorlens.evaluation.guard`): non-finite pixels, blank or
near-constant images, and, for the published model, pooled features outside the training distribution
(the threshold set on the validation split). A flagged image still gets its class, marked ``warning``
with the reasons, never a silent confident answer.

**Which map and mask.** The explain step of a run (`tumorlens.explain.scoring.evaluate_segmentation`)
writes ``segment.json``: the adopted map (a CAM setting or the weak-mask network, with
``segmenter.keras``), the mask kind and the thresholds tuned on expert masks. `Predictor.load` reads
it from ``--segmentation DIR``, else from ``<model>/segmentation/``, else from ``explain/`` beside
the model's variant folder (``runs/<profile>/explain``) when it was made for this model; without one
it uses ``_config.yml``'s ``segment`` section as it stands (untuned thresholds) and says so.

This is a research tool, not a diagnostic device.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import socket
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config
from tumorlens.data.inventory import walk_files
from tumorlens.data.io import IMAGE_EXTENSIONS, BadImageError, decode, is_dicom, letterbox, unletterbox_mask
from tumorlens.errors import OutputLockedError, UsageError
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.evaluation.guard import GuardStats, background_level, image_reasons, verdicts
from tumorlens.experiments import published as published_models
from tumorlens.explain.cam import CamSetting, predict_and_explain
from tumorlens.explain.gallery import overlay
from tumorlens.explain.refine import load_segmenter, mask_probabilities
from tumorlens.explain.weak_masks import SegmentParams, weak_mask
from tumorlens.models.classifier import backbone_of, load_model
from tumorlens.models.inference import batched_predict, fit_to_input, predict_images
from tumorlens.utils.files import read_json, write_json, write_text
from tumorlens.utils.progress import progress

__all__ = [
    "DISCLAIMER",
    "MAX_PART_BYTES",
    "LOCK_FILE",
    "INCOMPLETE",
    "safe_part",
    "out_lock",
    "find_inputs",
    "Segmentation",
    "find_segmentation",
    "Predictor",
    "predict_paths",
    "PredictReport",
    "main_predict",
]


DISCLAIMER = (
    "tumorlens is a research tool, not a diagnostic device: its outputs must not be used for "
    "diagnosis or treatment decisions."
)


#: The longest part of a result's name (bytes of UTF-8): with ``_mask.png`` and an atomic write's
#: temporary name around it, a file name stays far below the 255 bytes file systems allow.
MAX_PART_BYTES = 120
#: How a result's files end; a result's name is unique when none of these collides.
RESULT_ENDINGS = (".json", "_cam.png", "_mask.png")
#: The run's own files in ``--out`` (no input's results can take these names).
LOCK_FILE = ".tumorlens-predict.lock"
JOURNAL = ".tumorlens-predict.files"
INCOMPLETE = "INCOMPLETE"
TABLES = ("predictions.csv", "problems.csv")
_UNSAFE = set('<>:"/\\|?*') | {chr(c) for c in range(32)} | {chr(127)}


def safe_part(part: str) -> str:
    """One part of an input's path as a safe part of a result's name: never empty, ``.``, ``..`` or hidden
    (leading dots become ``_``), no path separator, control or reserved character (each becomes ``_``),
    at most `MAX_PART_BYTES` bytes (a longer part is cut and ends in ``~`` and 12 hex digits of its sha256,
    so two long names that differ anywhere stay two names)."""
    out = "".join("_" if ch in _UNSAFE else ch for ch in part)
    stripped = out.lstrip(".")
    out = "_" * (len(out) - len(stripped)) + stripped
    out = out or "_"
    b = out.encode("utf-8", "surrogateescape")
    if len(b) > MAX_PART_BYTES:
        digest = hashlib.sha256(part.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        out = b[: MAX_PART_BYTES - 13].decode("utf-8", "ignore") + "~" + digest
    return out.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # unpaired surrogates: U+FFFD


def _key(name: str) -> str:
    """How a file system may see a name: case-insensitively and with Unicode normalised (macOS, Windows)."""
    return unicodedata.normalize("NFC", name).casefold()


def find_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list[dict]]:
    """Expand files and folders (recursively) into ``[(file, result name)]`` and a list of problems.

    A folder's files keep their path under the folder's own name in the result name (``scans/sub/x``); a
    file given directly is named by its stem. Every part is made safe (`safe_part`) and the names unique:
    no two results share a file (case-insensitively, after Unicode normalisation), no result's file is
    another's folder, no name is the run's own files', and a name with a ``_2``... suffix is never one
    another input owns. Entries not read -- other kinds of files, hidden entries, links to folders,
    folders that cannot be read, broken links -- are problems, each with its reason.
    """
    found: list[tuple[Path, list[str]]] = []
    problems: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            problems.append({"path": str(p), "reason": "broken symbolic link" if p.is_symlink() else "not found"})
            continue
        if not p.is_dir():
            found.append((p, [safe_part(p.stem if p.suffix else p.name)]))
            continue
        top = safe_part(p.resolve().name or "root")  # ".." or "." name their real folder, never a path upwards
        try:
            files, skipped = walk_files(p)
        except OSError as exc:
            problems.append({"path": str(p), "reason": f"folder not readable ({exc.strerror or exc})"})
            continue
        for f, reason in skipped:
            problems.append({"path": str(f), "reason": f"skipped: {reason}"})
        for f in files:
            rel = f.relative_to(p)
            if f.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(f):
                parts = [*rel.parts[:-1], rel.stem if rel.suffix else rel.name]
                found.append((f, [top, *(safe_part(x) for x in parts)]))
            else:
                problems.append(
                    {"path": str(f), "reason": f"skipped: not an image or DICOM file ({f.suffix or 'no extension'})"}
                )
    return _unique_names(found), problems


def _unique_names(found: list[tuple[Path, list[str]]]) -> list[tuple[Path, str]]:
    reserved = {_key(n) for n in (LOCK_FILE, JOURNAL, INCOMPLETE, *TABLES)}
    folders: set[str] = set()
    for _, parts in found:
        if len(parts) > 1 and _key(parts[0]) in reserved:
            parts[0] += "_"  # a folder called INCOMPLETE or predictions.csv: its results go to INCOMPLETE_/
        for i in range(1, len(parts)):
            folders.add(_key("/".join(parts[:i])))
    owned = {_key("/".join(parts)) for _, parts in found}
    used: set[str] = set()
    unique = []
    for f, parts in found:
        stem = "/".join(parts)
        candidate, n = stem, 2

        def taken(name: str) -> bool:
            files = {_key(name + end) for end in RESULT_ENDINGS}
            return bool(files & used or files & folders or files & reserved) or (name != stem and _key(name) in owned)

        while taken(candidate):
            candidate, n = f"{stem}_{n}", n + 1
        used |= {_key(candidate + end) for end in RESULT_ENDINGS}
        unique.append((f, candidate))
    return unique


@dataclass(frozen=True)
class Segmentation:
    """How predict explains and outlines: the map, the mask kind, the thresholds and where they came from."""

    cam: CamSetting  # the map drawn by --explain (and the mask's map unless a segmenter is used)
    mask: str  # cam | grabcut: the binarised map or the map refined by GrabCut
    params: SegmentParams
    source: str  # the segment.json used, or a note that the thresholds are untuned
    segmenter: Path | None = None  # the weak-mask network (its probability is the mask's map)
    network_flip: bool = False  # average the network's map with the mirrored image's

    @property
    def label(self) -> str:
        base = "network" if self.segmenter else self.cam.name
        return f"{base}, " + ("binarised" if self.mask == "cam" else "GrabCut")

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "Segmentation":
        """From a folder holding ``segment.json`` (and ``segmenter.keras`` when the network is adopted)."""
        folder = Path(folder)
        f = folder / "segment.json"
        if not f.is_file():
            raise FileNotFoundError(
                f"{folder}: no segment.json (written by the explain step, tumorlens.explain.evaluate_segmentation)"
            )
        d = read_json(f, schema="segment")
        seg_file = folder / d["segmenter"] if d.get("segmenter") else None
        if seg_file is not None and not seg_file.is_file():
            raise FileNotFoundError(f"{f} adopts the weak-mask network but {seg_file} is missing")
        return cls(
            CamSetting.parse(d["cam"]),
            d["mask"],
            SegmentParams(**d["params"]),
            str(f),
            seg_file,
            bool(d.get("network_flip", False)),
        )

    @classmethod
    def from_config(cls, profile: str | None = None) -> "Segmentation":
        """The ``segment`` section of ``_config.yml`` as it stands (thresholds not tuned)."""
        s = load_config(profile).segment
        kind = "grabcut" if s.mask in ("grabcut", "network+grabcut") else "cam"
        return cls(
            CamSetting.from_config(s),
            kind,
            SegmentParams.from_config(s),
            "_config.yml segment section (untuned thresholds: no segment.json found for this model)",
        )


def find_segmentation(model: str | os.PathLike, explicit: str | os.PathLike | None = None) -> Segmentation:
    """The `Segmentation` for a model (see the module docstring for where it is looked for)."""
    if explicit is not None:
        return Segmentation.read(explicit)
    p = Path(model)
    run = p if p.is_dir() else p.parent
    candidates = [run / "segmentation", run.parent.parent / "explain"]
    for c in candidates:
        f = c / "segment.json"
        if not f.is_file():
            continue
        made_for = read_json(f, schema="segment")["model"]
        if c == candidates[0] or (made_for and paths.resolve(made_for) == run.resolve()):
            return Segmentation.read(c)
    return Segmentation.from_config()


@dataclass
class Predictor:
    """A loaded model (plus optional ensemble members) and what is needed to explain and outline."""

    model: object
    model_id: str
    backbone: str
    image_size: int
    members: list = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)
    segmentation: Segmentation | None = None
    segmenter: object = None
    guard: GuardStats | None = None  # the out-of-distribution statistics fitted for ``model`` (None: not checked)
    guard_source: str = "no guard statistics for this model: the feature check is not made (pixel checks only)"
    _heads: object = field(default=None, repr=False)  # ``model`` with its pooled features as a second output

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        ensemble: Sequence[str | os.PathLike] = (),
        segmentation: str | os.PathLike | None = None,
        guard: str | os.PathLike | None = None,
    ) -> "Predictor":
        """A run of one's own (``--model``), with ensemble members, the explain step's segmentation and,
        optionally, guard statistics fitted for it (a ``guard.npz`` written by `GuardStats.save`)."""

        def one(path):
            p = Path(path)
            m = load_model(p)
            cfg_file = (p if p.is_dir() else p.parent) / "config.json"
            backbone = None
            if cfg_file.is_file():
                backbone = read_json(cfg_file, schema="run")["config"]["model"]["backbone"]
            else:  # a bare .keras file: the model name starts with the backbone (see models.variant_name)
                backbone = backbone_of(m)
            if backbone is None:
                raise ValueError(f"{p}: cannot tell which backbone model {m.name!r} uses")
            return m, backbone, str(p)

        m, backbone, mid = one(model)
        members = [one(e) for e in ensemble]
        sg = find_segmentation(model, segmentation)
        stats = GuardStats.load(guard) if guard is not None else None
        return cls(
            m,
            mid,
            backbone,
            int(m.inputs[0].shape[1]),  # members of another input size get the images resized (fit_to_input)
            [x[0] for x in members],
            [x[2] for x in members],
            sg,
            load_segmenter(sg.segmenter) if sg.segmenter else None,
            stats,
            str(guard) if guard is not None else cls.guard_source,
        )

    @classmethod
    def published(
        cls,
        ensemble: bool = False,
        segmentation: str | os.PathLike | None = None,
        *,
        profile: str = published_models.PUBLISHED_PROFILE,
        folder: str | os.PathLike | None = None,
    ) -> "Predictor":
        """The published single model (`tumorlens.experiments.published`), with the published ensemble's
        other members when ``ensemble``; its map, mask and weak-mask network unless ``segmentation``."""
        mf = published_models.read_manifest(profile, folder)
        single = mf["single"]
        m = published_models.load(single, profile, folder)
        others = [n for n in mf["ensemble"] if n != single] if ensemble else []
        if ensemble and single not in mf["ensemble"]:
            raise published_models.PublishedModelError(
                f"the published single model {single} is not a member of the published ensemble {mf['ensemble']}"
            )
        members = [published_models.load(n, profile, folder) for n in others]
        seg_dir = published_models.segmentation_dir(profile, folder)
        if segmentation is not None:
            sg, segmenter = Segmentation.read(segmentation), None
            segmenter = load_segmenter(sg.segmenter) if sg.segmenter else None
        elif seg_dir is not None:
            sg = Segmentation.read(seg_dir)
            segmenter = published_models.load_segmenter(m, profile, folder)
        else:
            sg, segmenter = Segmentation.from_config(profile), None
        recipe = mf["models"][single]["recipe"]
        stats = published_models.load_guard(profile, folder)
        folder_name = paths.relative(published_models.models_dir(profile) if folder is None else Path(folder))
        return cls(
            m,
            f"published:{single}",
            recipe["backbone"],
            int(recipe["image_size"]),
            members,
            [f"published:{n}" for n in others],
            sg,
            segmenter,
            stats,
            f"{folder_name}/{published_models.GUARD_FILE}"
            if stats is not None
            else f"no guard statistics published in {folder_name}: the feature check is not made (pixel checks only)",
        )

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pooled features (N, D), class probabilities (N, 4))`` of the single model, in one pass."""
        if self._heads is None:
            import keras

            self._heads = keras.Model(self.model.inputs, [self.model.get_layer("predictions").input, self.model.output])
        x = fit_to_input(self.model, images).astype("float32")
        feats, probs = batched_predict(self._heads, [x], 32, "", False)
        return feats, probs

    @property
    def input_sides(self) -> list[int]:
        """The input sides of the model and its ensemble members (each is fed images letterboxed to its own)."""
        return sorted({self.image_size, *(int(m.inputs[0].shape[1]) for m in self.members)})

    def _members(self, images: np.ndarray, by_side: dict[int, np.ndarray] | None) -> list[np.ndarray]:
        """The members' probabilities, each on the images letterboxed to its own side when ``by_side`` holds
        them (the input policy chosen on validation: no second resampling), else on ``images`` resized."""
        out = []
        for m in self.members:
            side = int(m.inputs[0].shape[1])
            out.append(predict_images(m, by_side[side] if by_side and side in by_side else images))
        return out

    def predict(self, images: np.ndarray, explain: bool = False, segment: bool = False, by_side=None):
        """``(probs (N, 4), cams (N, S, S) or None, mask maps (N, S, S) or None)`` for letterboxed uint8 images.

        ``cams`` (with ``explain``) are the configured class activation maps; the mask maps (with
        ``segment``) are the network's tumour probability when a segmenter is adopted, else the cams.
        ``by_side``: the same images letterboxed to each of `input_sides` (``{side: (N, side, side, 3)}``),
        which an ensemble's members of another input side then read directly.
        """
        return self.predict_checked(images, explain, segment, by_side)[:3]

    def predict_checked(self, images: np.ndarray, explain: bool = False, segment: bool = False, by_side=None):
        """`predict` plus the single model's pooled features ``(N, D)`` when guard statistics are loaded
        (else None): ``(probs, cams, maps, features)``."""
        sg = self.segmentation or Segmentation.from_config()
        cams = maps = feats = None
        if self.guard is not None and not (explain or segment):  # features and classes from one pass
            feats, probs = self.features_and_probs(images)
            if self.members:
                probs = soft_vote([probs, *self._members(images, by_side)])
            return probs, None, None, feats
        if self.guard is not None:
            feats = self.features_and_probs(images)[0]
        if segment and self.segmenter is not None:
            probs, maps = mask_probabilities(self.segmenter, images, flip=sg.network_flip)
        if explain or (segment and maps is None):
            probs, cams = predict_and_explain(
                self.model, images, sg.cam.layer_names(self.backbone), method=sg.cam.method, flip=sg.cam.flip
            )
            maps = cams if maps is None else maps
        if cams is None and maps is None:
            probs = predict_images(self.model, images)
        if self.members:
            probs = soft_vote([probs, *self._members(images, by_side)])
        return probs, cams, maps, feats


@dataclass
class PredictReport:
    out: Path
    n_ok: int
    problems: list[dict]
    seconds: float
    n_flagged: int = 0  # images the input guard marked ``warning``
    notes: list[str] = field(default_factory=list)  # what the run did to --out beyond writing results

    @property
    def exit_code(self) -> int:
        return 0 if self.n_ok > 0 else 1


def _check_out(out: Path, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse an output folder that overlaps an input's folder either way (inside it, or holding it:
    a folder's results go to ``out/<folder name>/...``, which would be the input folder itself).
    Inputs that do not exist are left to `find_inputs`, which reports them."""
    o = out.resolve()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            continue
        p = p.resolve()
        folder = p if p.is_dir() else p.parent
        if o == folder or folder in o.parents:
            raise UsageError(
                f"the output folder {out} is inside the input folder {folder}: choose --out elsewhere "
                "(tumorlens never writes next to its inputs)"
            )
        if o in folder.parents:
            raise UsageError(
                f"the output folder {out} contains the input folder {folder}, and results would be "
                "written beside the inputs: choose --out elsewhere"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def _holder(text: str) -> tuple[int | None, str]:
    """``(pid, description)`` of a lock file's content (``pid host started``)."""
    parts = text.split(maxsplit=2)
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return None, "an unknown process"
    host = parts[1] if len(parts) > 1 else "?"
    since = parts[2].strip() if len(parts) > 2 else "?"
    return pid, f"process {pid} on {host} (since {since})"


@contextlib.contextmanager
def out_lock(out: str | os.PathLike) -> Iterator[str | None]:
    """Hold ``out`` for this process for the block: ``out/.tumorlens-predict.lock`` holds its pid, host and
    start time, under an exclusive ``flock`` the system releases when the process dies. While another live
    process holds it, `OutputLockedError` names that process; a lock file left by a dead process is taken
    over (the block receives a note saying so, else None). The lock file is removed at the end."""
    out = Path(out)
    lock = out / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    try:
        import fcntl
    except ImportError:  # not POSIX: an exclusive create, and the pid to tell a stale lock
        fcntl = None
    note = None
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    _, who = _holder(os.pread(fd, 200, 0).decode("utf-8", "replace"))
                    raise OutputLockedError(
                        f"{out} is being written by another tumorlens predict ({who}): wait for it to finish or "
                        "choose another --out"
                    ) from None
                try:
                    same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not a file its last holder just removed
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            old = os.pread(fd, 200, 0).decode("utf-8", "replace")
            pid, who = _holder(old)
            if old.strip():
                if fcntl is None and pid is not None and _alive(pid) and pid != os.getpid():
                    raise OutputLockedError(
                        f"{out} is being written by another tumorlens predict ({who}): wait for it to finish "
                        f"or choose another --out (if no such process runs, delete {lock})"
                    )
                note = f"took over the lock of {who}, which no longer runs (a run that was killed)"
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
            os.fsync(fd)
            break
        except BaseException:
            os.close(fd)
            raise
    else:
        raise OutputLockedError(f"{out}: could not take its lock file {lock} (it keeps being replaced)")
    try:
        yield note
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _previous_files(out: Path) -> list[Path] | None:
    """What an earlier predict run wrote into ``out``: its journal (or, for a folder from a version before
    journals, the outputs its predictions.csv names); None when ``out`` shows no sign of a predict run."""
    journal = out / JOURNAL
    listed: list[str] = []
    if journal.is_file():
        listed = [line for line in journal.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if line]
    elif (out / "predictions.csv").is_file():
        with open(out / "predictions.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            for row in csv.DictReader(fh):
                stem = (row.get("output") or "").removesuffix(".json")
                if stem:
                    listed += [stem + end for end in RESULT_ENDINGS]
    elif not (out / INCOMPLETE).is_file():
        return None
    return [out / n for n in (*listed, *TABLES, INCOMPLETE, JOURNAL)]


def _clear_previous(out: Path) -> list[str]:
    """Remove what an earlier predict run wrote into ``out`` (`_previous_files`), and the folders that
    leaves empty; other files stay. `UsageError` when nothing says a predict run wrote ``out``."""
    files = _previous_files(out)
    if files is None:
        raise UsageError(
            f"--overwrite: {out} holds files tumorlens predict did not write (no {JOURNAL}, predictions.csv or "
            f"{INCOMPLETE}); choose another --out (nothing was deleted)"
        )
    root = out.resolve()
    removed = 0
    for f in files:
        try:
            if f.is_symlink() or not f.resolve().is_relative_to(root):
                continue  # never follow a name out of --out
            if f.is_file():
                f.unlink()
                removed += 1
        except OSError:
            continue
    for d in sorted((p for p in out.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.name != LOCK_FILE and not p.is_dir())
    notes = [f"--overwrite: removed the {removed} file(s) an earlier run wrote into {out}"]
    if kept:
        notes.append(
            f"--overwrite: kept {len(kept)} file(s) no earlier predict run wrote: {', '.join(kept[:5])}"
            + (" ..." if len(kept) > 5 else "")
        )
    return notes


def _write_table(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


PREDICTION_FIELDS = ["input", "output", "class", *[f"p_{c}" for c in CLASSES], "guard", "guard_reasons", "note"]


def predict_paths(
    inputs: Sequence[str | os.PathLike],
    predictor: Predictor,
    out: str | os.PathLike,
    *,
    explain: bool = False,
    segment: bool = False,
    batch_size: int = 16,
    show_progress: bool = True,
    params=None,
    overwrite: bool = False,
) -> PredictReport:
    """Predict every image under ``inputs`` and write the results to ``out`` (see the module docstring).

    Every input ends as exactly one row: of ``predictions.csv`` (with the guard's verdict) or of
    ``problems.csv`` (with the reason). Raises `UsageError` for an ``out`` overlapping an input's folder, or
    not empty without ``overwrite``; `OutputLockedError` while another run writes into it. Interrupted (or
    failing), it still writes both tables for what it did and leaves ``INCOMPLETE`` in ``out``.
    """

    t0 = time.perf_counter()
    out = Path(out)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1; received batch_size={batch_size!r}")
    _check_out(out, inputs)
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out) as took_over:
        notes = [took_over] if took_over else []
        if any(p.name != LOCK_FILE for p in out.iterdir()):
            if not overwrite:
                raise UsageError(
                    f"the output folder {out} is not empty: choose a new --out (results of two runs would mix) "
                    "or pass --overwrite (which removes the earlier run's results first)"
                )
            notes += _clear_previous(out)
        write_text(
            out / INCOMPLETE,
            f"tumorlens predict (process {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}) is writing "
            "here or was interrupted: the results in this folder are incomplete until this file is gone.\n",
        )
        rows: list[dict] = []
        problems: list[dict] = []
        n_flagged = 0
        with open(out / JOURNAL, "a", encoding="utf-8", errors="surrogateescape") as journal:

            def record(name: str) -> Path:  # journal first: a crash mid-write still leaves the file listed
                journal.write(name + "\n")
                journal.flush()
                return out / name

            try:
                files, problems = find_inputs(inputs)
                n_flagged = _predict_files(
                    files, problems, rows, predictor, out, record, explain, segment, batch_size, show_progress, params
                )
            finally:
                _write_table(out / "predictions.csv", PREDICTION_FIELDS, rows)
                _write_table(out / "problems.csv", ["path", "reason"], problems)
        (out / INCOMPLETE).unlink()
    return PredictReport(out, len(rows), problems, round(time.perf_counter() - t0, 2), n_flagged, notes)


def _predict_files(files, problems, rows, predictor, out, record, explain, segment, batch_size, show_progress, params):
    """The loop of `predict_paths`: appends to ``rows`` and ``problems``; returns how many were flagged."""
    explain = explain or segment  # a mask comes with the map it was made from
    sg = predictor.segmentation or Segmentation.from_config()
    params = params or sg.params
    size = predictor.image_size
    n_flagged = 0
    for s in progress(
        range(0, len(files), batch_size),
        total=-(-len(files) // batch_size),
        desc="predicting",
        unit="batch",
        disable=not show_progress,
    ):
        batch, meta = [], []
        sides = {side: [] for side in predictor.input_sides if side != size}
        for f, stem in files[s : s + batch_size]:
            try:
                d = decode(f)
            except BadImageError as exc:
                problems.append({"path": str(f), "reason": exc.reason})
                continue
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not lose the others
                problems.append({"path": str(f), "reason": f"unreadable ({type(exc).__name__}: {exc})"})
                continue
            batch.append(letterbox(d.array, size))
            for side, imgs in sides.items():  # each ensemble member reads the image letterboxed to its own side
                imgs.append(letterbox(d.array, side))
            meta.append(
                (f, stem, d.array.shape[:2], d.note, image_reasons(d.array, d.nonfinite), background_level(d.array))
            )
        if not batch:
            continue
        x = np.stack(batch)
        by_side = {side: np.stack(imgs) for side, imgs in sides.items()}
        probs, cams, maps, feats = predictor.predict_checked(x, explain, segment, by_side)
        checks = verdicts([m[4] for m in meta], feats, predictor.guard, [m[5] for m in meta])
        for i, (f, stem, hw, note, _, _) in enumerate(meta):
            if not np.all(np.isfinite(probs[i])):  # a broken model: no answer rather than NaN in the JSON
                problems.append({"path": str(f), "reason": "the model gave non-finite probabilities (broken weights?)"})
                continue
            cls = CLASSES[int(np.argmax(probs[i]))]
            verdict = checks[i]
            n_flagged += verdict.status == "warning"
            base = out / stem
            base.parent.mkdir(parents=True, exist_ok=True)
            rec = {
                "input": str(f),
                "class": cls,
                "probabilities": {c: float(p) for c, p in zip(CLASSES, probs[i])},
                "model": predictor.model_id,
                "ensemble": predictor.member_ids,
                "image_size": size,
                "guard": {**verdict.to_dict(), "statistics": predictor.guard_source},
            }
            if note:  # a conversion the input needed (16-bit rescaled, CMYK converted), as `data scan` reports it
                rec["note"] = note
            if explain:
                cv2.imwrite(str(record(stem + "_cam.png")), cv2.cvtColor(overlay(x[i], cams[i]), cv2.COLOR_RGB2BGR))
                rec["cam_overlay"] = base.name + "_cam.png"
                rec["cam_method"] = sg.cam.name
            if segment:
                mask = unletterbox_mask(weak_mask(x[i], maps[i], cls, params, sg.mask), hw)
                cv2.imwrite(str(record(stem + "_mask.png")), mask.astype(np.uint8) * 255)
                rec["mask"] = base.name + "_mask.png"
                rec["mask_pixels"] = int(mask.sum())
                rec["mask_method"] = sg.label
                rec["mask_settings"] = paths.relative(sg.source) if sg.source.endswith(".json") else sg.source
            write_json(record(stem + ".json"), rec)
            rows.append(
                {
                    "input": str(f),
                    "output": stem + ".json",
                    "class": cls,
                    **{f"p_{c}": f"{p:.6f}" for c, p in zip(CLASSES, probs[i])},
                    "guard": verdict.status,
                    "guard_reasons": "; ".join(verdict.reasons),
                    "note": note or "",
                }
            )
    return n_flagged


def default_out() -> Path:

    root = Path(os.environ.get("TUMORLENS_RUNS") or paths.repo_root() / "runs")
    return root / "predict" / time.strftime("%Y%m%d-%H%M%S")


def main_predict(args) -> int:
    """The ``tumorlens predict`` command (see `tumorlens.cli`). Options that do not fit together raise
    `UsageError` (the command exits 2)."""
    print(DISCLAIMER, file=sys.stderr)
    ensemble, segmentation = list(args.ensemble or ()), getattr(args, "segmentation", None)
    guard = getattr(args, "guard", None)
    if ensemble == ["published"] or (args.model is None and not ensemble):
        if args.model is not None:
            raise UsageError(
                f"--ensemble published is the published ensemble; it takes no --model (received {args.model})"
            )
        if guard is not None:
            raise UsageError(f"--guard is for --model RUN; the published model has its own (received --guard {guard})")
        predictor = Predictor.published(ensemble=bool(ensemble), segmentation=segmentation)
        print(
            f"model: {predictor.model_id}" + (f" + {', '.join(predictor.member_ids)}" if ensemble else ""),
            file=sys.stderr,
        )
    elif args.model is None:
        raise UsageError("--ensemble RUN ... soft-votes with --model: pass --model too (or --ensemble published)")
    elif "published" in ensemble:
        raise UsageError(f"--ensemble published stands alone; received --ensemble {' '.join(ensemble)}")
    else:
        predictor = Predictor.load(args.model, ensemble, segmentation, guard)
    print(f"input guard: {predictor.guard_source}", file=sys.stderr)
    if args.segment or args.explain:
        print(f"map and mask: {predictor.segmentation.label} ({predictor.segmentation.source})", file=sys.stderr)
    out = Path(args.out) if args.out else default_out()
    rep = predict_paths(
        args.paths,
        predictor,
        out,
        explain=args.explain,
        segment=args.segment,
        show_progress=not args.quiet,
        overwrite=getattr(args, "overwrite", False),
    )
    for n in rep.notes:
        print(n, file=sys.stderr)
    print(f"{rep.n_ok} image(s) predicted in {rep.seconds:.1f} s; results in {rep.out}")
    if rep.n_flagged:
        print(
            f"{rep.n_flagged} image(s) flagged by the input guard (guard = warning in predictions.csv): "
            "their classes are not to be trusted",
            file=sys.stderr,
        )
    if rep.problems:
        print(f"{len(rep.problems)} file(s) not processed:", file=sys.stderr)
        for p in rep.problems:
            print(f"  {p['path']}: {p['reason']}", file=sys.stderr)
    return rep.exit_code
