"""Predict (and explain, and outline) a user's own scans: JPEG, PNG and DICOM slices.

    tumorlens predict scans/ --model runs/cpu/efficientnet_lite0+sbr/seed-42 --segment --out out/

Per image the output folder receives ``<name>.json`` (class, probabilities, model id), with
``--explain`` ``<name>_cam.png`` (the class activation map as an overlay) and with ``--segment``
``<name>_mask.png`` (the weak tumour mask, 255 = tumour); plus ``predictions.csv`` for all images and
``problems.csv`` for the files that could not be read. Nothing is ever written next to or over an input.

**Which map and mask.** The explain step of a run (`tumorlens.explain.scoring.evaluate_segmentation`)
writes ``segment.json``: the adopted map (a CAM setting or the weak-mask network, with
``segmenter.keras``), the mask kind and the thresholds tuned on expert masks. `Predictor.load` reads
it from ``--segmentation DIR``, else from ``<model>/segmentation/``, else from ``explain/`` beside
the model's variant folder (``runs/<profile>/explain``) when it was made for this model; without one
it uses ``_config.yml``'s ``segment`` section as it stands (untuned thresholds) and says so.

This is a research tool, not a diagnostic device.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config
from tumorlens.data.io import IMAGE_EXTENSIONS, BadImageError, is_dicom, letterbox, read_any_noted, unletterbox_mask
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.experiments import published as published_models
from tumorlens.explain.cam import CamSetting, predict_and_explain
from tumorlens.explain.gallery import overlay
from tumorlens.explain.refine import load_segmenter, mask_probabilities
from tumorlens.explain.weak_masks import SegmentParams, weak_mask
from tumorlens.models.classifier import backbone_of, load_model
from tumorlens.models.inference import predict_images
from tumorlens.utils.files import read_json, write_json
from tumorlens.utils.progress import progress

__all__ = [
    "DISCLAIMER",
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
        top = p.resolve().name or "root"  # ".." or "." name their real folder, never a path upwards
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if f.is_dir() or any(part.startswith(".") for part in rel.parts):
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(f):
                found.append((f, str(Path(top) / rel.with_suffix(""))))
            else:
                problems.append(
                    {"path": str(f), "reason": f"skipped: not an image or DICOM file ({f.suffix or 'no extension'})"}
                )
    # unique output stems (case-insensitively: some file systems are), never one another input already owns
    owned = {stem.lower() for _, stem in found}
    used: set[str] = set()
    unique = []
    for f, stem in found:
        candidate, n = stem, 2
        while candidate.lower() in used or (candidate != stem and candidate.lower() in owned):
            candidate, n = f"{stem}_{n}", n + 1
        used.add(candidate.lower())
        unique.append((f, candidate))
    return unique, problems


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

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        ensemble: Sequence[str | os.PathLike] = (),
        segmentation: str | os.PathLike | None = None,
    ) -> "Predictor":

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
        return cls(
            m,
            mid,
            backbone,
            int(m.inputs[0].shape[1]),  # members of another input size get the images resized (fit_to_input)
            [x[0] for x in members],
            [x[2] for x in members],
            sg,
            load_segmenter(sg.segmenter) if sg.segmenter else None,
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
        return cls(
            m,
            f"published:{single}",
            recipe["backbone"],
            int(recipe["image_size"]),
            members,
            [f"published:{n}" for n in others],
            sg,
            segmenter,
        )

    def predict(self, images: np.ndarray, explain: bool = False, segment: bool = False):
        """``(probs (N, 4), cams (N, S, S) or None, mask maps (N, S, S) or None)`` for letterboxed uint8 images.

        ``cams`` (with ``explain``) are the configured class activation maps; the mask maps (with
        ``segment``) are the network's tumour probability when a segmenter is adopted, else the cams.
        """
        sg = self.segmentation or Segmentation.from_config()
        cams = maps = None
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
            probs = soft_vote([probs, *[predict_images(m, images) for m in self.members]])
        return probs, cams, maps


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
    overwrite: bool = False,
) -> PredictReport:
    """Predict every image under ``inputs`` and write the results to ``out`` (see the module docstring)."""

    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, inputs)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"the output folder {out} is not empty: choose a new --out (results of two runs would mix) "
            "or pass --overwrite"
        )
    files, problems = find_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    explain = explain or segment  # a mask comes with the map it was made from
    sg = predictor.segmentation or Segmentation.from_config()
    params = params or sg.params
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
                arr, note = read_any_noted(f)
            except BadImageError as exc:
                problems.append({"path": str(f), "reason": exc.reason})
                continue
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not lose the others
                problems.append({"path": str(f), "reason": f"unreadable ({type(exc).__name__}: {exc})"})
                continue
            batch.append(letterbox(arr, size))
            meta.append((f, stem, arr.shape[:2], note))
        if not batch:
            continue
        x = np.stack(batch)
        probs, cams, maps = predictor.predict(x, explain, segment)
        for i, (f, stem, hw, note) in enumerate(meta):
            if not np.all(np.isfinite(probs[i])):  # a broken model: no answer rather than NaN in the JSON
                problems.append({"path": str(f), "reason": "the model gave non-finite probabilities (broken weights?)"})
                continue
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
            if note:  # a conversion the input needed (16-bit rescaled, CMYK converted), as `data scan` reports it
                record["note"] = note
            if explain:
                cv2.imwrite(str(base) + "_cam.png", cv2.cvtColor(overlay(x[i], cams[i]), cv2.COLOR_RGB2BGR))
                record["cam_overlay"] = base.name + "_cam.png"
            if explain:
                record["cam_method"] = sg.cam.name
            if segment:
                mask = unletterbox_mask(weak_mask(x[i], maps[i], cls, params, sg.mask), hw)
                cv2.imwrite(str(base) + "_mask.png", mask.astype(np.uint8) * 255)
                record["mask"] = base.name + "_mask.png"
                record["mask_pixels"] = int(mask.sum())
                record["mask_method"] = sg.label
                record["mask_settings"] = paths.relative(sg.source) if sg.source.endswith(".json") else sg.source
            write_json(Path(str(base) + ".json"), record)
            rows.append(
                {
                    "input": str(f),
                    "output": stem + ".json",
                    "class": cls,
                    **{f"p_{c}": f"{p:.6f}" for c, p in zip(CLASSES, probs[i])},
                    "note": note or "",
                }
            )
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["input", "output", "class", *[f"p_{c}" for c in CLASSES], "note"])
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
    ensemble, segmentation = list(args.ensemble or ()), getattr(args, "segmentation", None)
    if ensemble == ["published"] or (args.model is None and not ensemble):
        if args.model is not None:
            raise SystemExit("--ensemble published is the published ensemble; it takes no --model")
        predictor = Predictor.published(ensemble=bool(ensemble), segmentation=segmentation)
        print(
            f"model: {predictor.model_id}" + (f" + {', '.join(predictor.member_ids)}" if ensemble else ""),
            file=sys.stderr,
        )
    elif args.model is None:
        raise SystemExit("--ensemble RUN ... soft-votes with --model: pass --model too (or --ensemble published)")
    else:
        predictor = Predictor.load(args.model, ensemble, segmentation)
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
    print(f"{rep.n_ok} image(s) predicted in {rep.seconds:.1f} s; results in {rep.out}")
    if rep.problems:
        print(f"{len(rep.problems)} file(s) not processed:", file=sys.stderr)
        for p in rep.problems:
            print(f"  {p['path']}: {p['reason']}", file=sys.stderr)
    return rep.exit_code
