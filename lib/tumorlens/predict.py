"""Predict (and explain, and outline) a user's own scans: JPEG, PNG and DICOM slices.

    tumorlens predict scans/ --model runs/cpu/efficientnet_lite0+mab+respath+sbr/seed-42 --segment --out out/

Per image the output folder receives ``<name>.json`` (class, probabilities, model id), with
``--explain`` ``<name>_cam.png`` (Grad-CAM overlay) and with ``--segment`` ``<name>_mask.png``
(CAM + GrabCut mask, 255 = tumour); plus ``predictions.csv`` for all images and ``problems.csv``
for the files that could not be read. Nothing is ever written next to or over an input.

This is a research tool, not a diagnostic device.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data import IMAGE_EXTENSIONS, BadImageError, letterbox, read_image
from tumorlens.progress import progress

__all__ = ["DISCLAIMER", "read_any", "read_dicom", "find_inputs", "Predictor", "predict_paths", "PredictReport"]

DISCLAIMER = ("tumorlens is a research tool, not a diagnostic device: its outputs must not be used for "
              "diagnosis or treatment decisions.")
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """A DICOM slice as uint8 RGB ``(H, W, 3)``: rescale slope/intercept applied, then the slice's
    own window (centre/width) — or its min-max range when it has none.

    Raises `BadImageError` for files pydicom cannot read, without pixel data, or with several frames.
    """
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise BadImageError(path, "reading DICOM needs pydicom (a tumorlens dependency): pip install pydicom") from None
    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array.astype(np.float64)
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError, TypeError) as exc:
        raise BadImageError(path, f"not a readable DICOM image ({type(exc).__name__}: {exc})") from None
    except (RuntimeError, NotImplementedError) as exc:  # e.g. compressed pixel data without a decoder plugin
        raise BadImageError(path, f"DICOM pixel data that cannot be decoded here ({type(exc).__name__}: {exc}); "
                                  "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg) or export "
                                  "an uncompressed slice") from None
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        raise BadImageError(path, f"a multi-frame DICOM ({arr.shape[0]} frames): export single slices")
    if arr.ndim == 3:  # colour DICOM (RGB)
        return np.clip(arr[..., :3], 0, 255).astype(np.uint8)
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    centre, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if centre is not None and width is not None:
        c = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = c - w / 2, c + w / 2
    else:
        lo, hi = float(arr.min()), float(arr.max())
    scaled = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255 - scaled
    u8 = scaled.astype(np.uint8)
    if min(u8.shape) < 16:
        raise BadImageError(path, f"image too small ({u8.shape[1]}x{u8.shape[0]} px)")
    return np.repeat(u8[..., None], 3, axis=2)


def read_any(path: str | os.PathLike) -> np.ndarray:
    """JPEG/PNG/... via `tumorlens.data.read_image`, DICOM via `read_dicom`; uint8 RGB."""
    p = Path(path)
    if _is_dicom(p):
        return read_dicom(p)
    return read_image(p)[0]


def find_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list[dict]]:
    """Expand files and folders (recursively) into ``[(file, output stem)]`` and a list of problems.

    A folder's files keep their relative path in the output stem; hidden files are skipped;
    files with other extensions (and no DICOM header) are listed as skipped.
    """
    found: list[tuple[Path, str]] = []
    problems: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            problems.append({"path": str(p), "reason": "not found"})
            continue
        if p.is_file():
            found.append((p, p.stem))
            continue
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if f.is_dir() or any(part.startswith(".") for part in rel.parts):
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS or _is_dicom(f):
                found.append((f, str(Path(p.name) / rel.with_suffix(""))))
            else:
                problems.append({"path": str(f), "reason": f"skipped: not an image or DICOM file ({f.suffix or 'no extension'})"})
    # unique output stems
    seen: dict[str, int] = {}
    unique = []
    for f, stem in found:
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        unique.append((f, stem if n == 0 else f"{stem}_{n + 1}"))
    return unique, problems


@dataclass
class Predictor:
    """A loaded model (plus optional ensemble members) and what is needed to explain it."""

    model: object
    model_id: str
    backbone: str
    image_size: int
    members: list = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, model: str | os.PathLike, ensemble: Sequence[str | os.PathLike] = ()) -> "Predictor":
        from tumorlens.backbones import REGISTRY
        from tumorlens.models import load_model

        def one(path):
            p = Path(path)
            m = load_model(p)
            cfg_file = (p if p.is_dir() else p.parent) / "config.json"
            backbone = None
            if cfg_file.is_file():
                backbone = json.loads(cfg_file.read_text())["config"]["model"]["backbone"]
            else:  # a bare .keras file: the model name starts with the backbone (see models.variant_name)
                backbone = next((b for b in sorted(REGISTRY, key=len, reverse=True) if m.name.startswith(b)), None)
            if backbone is None:
                raise ValueError(f"{p}: cannot tell which backbone model {m.name!r} uses")
            return m, backbone, str(p)

        m, backbone, mid = one(model)
        members = [one(e) for e in ensemble]
        return cls(m, mid, backbone, int(m.inputs[0].shape[1]), [x[0] for x in members], [x[2] for x in members])

    def predict(self, images: np.ndarray, explain: bool = False):
        """``(probs (N, 4), cams (N, S, S) or None)`` for letterboxed uint8 images."""
        from tumorlens.backbones import get_spec
        from tumorlens.ensemble import soft_vote
        from tumorlens.explain import predict_and_explain
        from tumorlens.train import predict_images

        if explain:
            probs, cams = predict_and_explain(self.model, images, get_spec(self.backbone).target_layer)
        else:
            probs, cams = predict_images(self.model, images), None
        if self.members:
            probs = soft_vote([probs, *[predict_images(m, images) for m in self.members]])
        return probs, cams


@dataclass
class PredictReport:
    out: Path
    n_ok: int
    problems: list[dict]
    seconds: float

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
            raise ValueError(f"the output folder {out} is inside the input folder {folder}: choose --out elsewhere "
                             "(tumorlens never writes next to its inputs)")
        if o in folder.parents:
            raise ValueError(f"the output folder {out} contains the input folder {folder}, and results would be "
                             "written beside the inputs: choose --out elsewhere")


def predict_paths(inputs: Sequence[str | os.PathLike], predictor: Predictor, out: str | os.PathLike, *,
                  explain: bool = False, segment: bool = False, batch_size: int = 16,
                  show_progress: bool = True, params=None) -> PredictReport:
    """Predict every image under ``inputs`` and write the results to ``out`` (see the module docstring)."""
    from tumorlens.report import overlay
    from tumorlens.segment import SegmentParams, segment as seg

    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, inputs)
    files, problems = find_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    explain = explain or segment
    params = params or SegmentParams()
    rows = []
    size = predictor.image_size
    for s in progress(range(0, len(files), batch_size), total=-(-len(files) // batch_size), desc="predicting",
                      unit="batch", disable=not show_progress):
        batch, meta = [], []
        for f, stem in files[s:s + batch_size]:
            try:
                arr = read_any(f)
            except BadImageError as exc:
                problems.append({"path": str(f), "reason": exc.reason})
                continue
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not lose the others
                problems.append({"path": str(f), "reason": f"unreadable ({type(exc).__name__}: {exc})"})
                continue
            batch.append(letterbox(arr, size))
            meta.append((f, stem, arr.shape[:2]))
        if not batch:
            continue
        x = np.stack(batch)
        probs, cams = predictor.predict(x, explain)
        for i, (f, stem, hw) in enumerate(meta):
            cls = CLASSES[int(np.argmax(probs[i]))]
            base = out / stem
            base.parent.mkdir(parents=True, exist_ok=True)
            record = {"input": str(f), "class": cls, "probabilities": {c: float(p) for c, p in zip(CLASSES, probs[i])},
                      "model": predictor.model_id, "ensemble": predictor.member_ids, "image_size": size}
            if explain:
                cv2.imwrite(str(base) + "_cam.png", cv2.cvtColor(overlay(x[i], cams[i]), cv2.COLOR_RGB2BGR))
                record["cam_overlay"] = base.name + "_cam.png"
            if segment:
                from tumorlens.segment import unletterbox_mask

                mask = unletterbox_mask(seg(x[i], cams[i], cls, params)["grabcut"], hw)
                cv2.imwrite(str(base) + "_mask.png", mask.astype(np.uint8) * 255)
                record["mask"] = base.name + "_mask.png"
                record["mask_pixels"] = int(mask.sum())
            (Path(str(base) + ".json")).write_text(json.dumps(record, indent=2))
            rows.append({"input": str(f), "output": stem + ".json", "class": cls,
                         **{f"p_{c}": f"{p:.6f}" for c, p in zip(CLASSES, probs[i])}})
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["input", "output", "class", *[f"p_{c}" for c in CLASSES]])
        w.writeheader()
        w.writerows(rows)
    with open(out / "problems.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "reason"])
        w.writeheader()
        w.writerows(problems)
    return PredictReport(out, len(rows), problems, round(time.perf_counter() - t0, 2))


def default_out() -> Path:
    from tumorlens import paths

    root = Path(os.environ.get("TUMORLENS_RUNS") or paths.repo_root() / "runs")
    return root / "predict" / time.strftime("%Y%m%d-%H%M%S")


def main_predict(args) -> int:
    """The ``tumorlens predict`` command (see `tumorlens.cli`)."""
    print(DISCLAIMER, file=sys.stderr)
    predictor = Predictor.load(args.model, args.ensemble or ())
    out = Path(args.out) if args.out else default_out()
    rep = predict_paths(args.paths, predictor, out, explain=args.explain, segment=args.segment,
                        show_progress=not args.quiet)
    print(f"{rep.n_ok} image(s) predicted in {rep.seconds:.1f} s; results in {rep.out}")
    if rep.problems:
        print(f"{len(rep.problems)} file(s) not processed:", file=sys.stderr)
        for p in rep.problems:
            print(f"  {p['path']}: {p['reason']}", file=sys.stderr)
    return rep.exit_code
