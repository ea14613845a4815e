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

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.data.io import IMAGE_EXTENSIONS, BadImageError, is_dicom, letterbox, read_any, unletterbox_mask
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.explain.cam import predict_and_explain
from tumorlens.explain.gallery import overlay
from tumorlens.explain.weak_masks import SegmentParams
from tumorlens.explain.weak_masks import segment as seg
from tumorlens.models.backbones import get_spec
from tumorlens.models.classifier import backbone_of, load_model
from tumorlens.models.inference import predict_images
from tumorlens.utils.progress import progress

__all__ = ["DISCLAIMER", "find_inputs", "Predictor", "predict_paths", "PredictReport", "main_predict"]


DISCLAIMER = (
    "tumorlens is a research tool, not a diagnostic device: its outputs must not be used for "
    "diagnosis or treatment decisions."
)


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
            if f.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(f):
                found.append((f, str(Path(p.name) / rel.with_suffix(""))))
            else:
                problems.append(
                    {"path": str(f), "reason": f"skipped: not an image or DICOM file ({f.suffix or 'no extension'})"}
                )
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

        def one(path):
            p = Path(path)
            m = load_model(p)
            cfg_file = (p if p.is_dir() else p.parent) / "config.json"
            backbone = None
            if cfg_file.is_file():
                backbone = json.loads(cfg_file.read_text())["config"]["model"]["backbone"]
            else:  # a bare .keras file: the model name starts with the backbone (see models.variant_name)
                backbone = backbone_of(m)
            if backbone is None:
                raise ValueError(f"{p}: cannot tell which backbone model {m.name!r} uses")
            return m, backbone, str(p)

        m, backbone, mid = one(model)
        members = [one(e) for e in ensemble]
        return cls(m, mid, backbone, int(m.inputs[0].shape[1]), [x[0] for x in members], [x[2] for x in members])

    def predict(self, images: np.ndarray, explain: bool = False):
        """``(probs (N, 4), cams (N, S, S) or None)`` for letterboxed uint8 images."""

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
            raise ValueError(
                f"the output folder {out} is inside the input folder {folder}: choose --out elsewhere "
                "(tumorlens never writes next to its inputs)"
            )
        if o in folder.parents:
            raise ValueError(
                f"the output folder {out} contains the input folder {folder}, and results would be "
                "written beside the inputs: choose --out elsewhere"
            )


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
) -> PredictReport:
    """Predict every image under ``inputs`` and write the results to ``out`` (see the module docstring)."""

    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, inputs)
    files, problems = find_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    explain = explain or segment
    params = params or SegmentParams()
    rows = []
    size = predictor.image_size
    for s in progress(
        range(0, len(files), batch_size),
        total=-(-len(files) // batch_size),
        desc="predicting",
        unit="batch",
        disable=not show_progress,
    ):
        batch, meta = [], []
        for f, stem in files[s : s + batch_size]:
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
            record = {
                "input": str(f),
                "class": cls,
                "probabilities": {c: float(p) for c, p in zip(CLASSES, probs[i])},
                "model": predictor.model_id,
                "ensemble": predictor.member_ids,
                "image_size": size,
            }
            if explain:
                cv2.imwrite(str(base) + "_cam.png", cv2.cvtColor(overlay(x[i], cams[i]), cv2.COLOR_RGB2BGR))
                record["cam_overlay"] = base.name + "_cam.png"
            if segment:
                mask = unletterbox_mask(seg(x[i], cams[i], cls, params)["grabcut"], hw)
                cv2.imwrite(str(base) + "_mask.png", mask.astype(np.uint8) * 255)
                record["mask"] = base.name + "_mask.png"
                record["mask_pixels"] = int(mask.sum())
            (Path(str(base) + ".json")).write_text(json.dumps(record, indent=2))
            rows.append(
                {
                    "input": str(f),
                    "output": stem + ".json",
                    "class": cls,
                    **{f"p_{c}": f"{p:.6f}" for c, p in zip(CLASSES, probs[i])},
                }
            )
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

    root = Path(os.environ.get("TUMORLENS_RUNS") or paths.repo_root() / "runs")
    return root / "predict" / time.strftime("%Y%m%d-%H%M%S")


def main_predict(args) -> int:
    """The ``tumorlens predict`` command (see `tumorlens.cli`)."""
    print(DISCLAIMER, file=sys.stderr)
    predictor = Predictor.load(args.model, args.ensemble or ())
    out = Path(args.out) if args.out else default_out()
    rep = predict_paths(
        args.paths, predictor, out, explain=args.explain, segment=args.segment, show_progress=not args.quiet
    )
    print(f"{rep.n_ok} image(s) predicted in {rep.seconds:.1f} s; results in {rep.out}")
    if rep.problems:
        print(f"{len(rep.problems)} file(s) not processed:", file=sys.stderr)
        for p in rep.problems:
            print(f"  {p['path']}: {p['reason']}", file=sys.stderr)
    return rep.exit_code
