"""``tumorlens external``: the published models, and every run, scored on external folders (another
release's images).

    tumorlens external --profile cpu                 # the folders of `external.folders` in _config.yml
    tumorlens external --folder path/to/class-folders

The published single model and the published ensemble (`tumorlens.experiments.published`) are scored
on each folder (`tumorlens.evaluation.external`), and so is every complete, current training run of the
profile found under ``runs/<profile>/`` (`score_runs`), with the soft-voting ensemble of the ensemble
step's members; the record goes to ``results/<profile>/external.json``, whose per-run scores `collect`
puts beside the official and de-duplicated ones in the RQ tables and ``summary.json``. External
folders are for reporting only: nothing is trained, chosen or tuned on them, so changing them never
makes a training run stale -- rerun this command instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config
from tumorlens.data.inventory import scan
from tumorlens.data.leakage import cross_pairs, fingerprints
from tumorlens.data.prepared import prepare
from tumorlens.errors import TumorlensError
from tumorlens.evaluation.ensembles import load_pipeline, soft_vote
from tumorlens.evaluation.external import ExternalSet, load_external, score_external
from tumorlens.evaluation.gate import choose_threshold, evidence_quantiles, gate_curve
from tumorlens.experiments import published
from tumorlens.experiments.collect import MANIFEST, refresh_tables, results_dir, write_manifest
from tumorlens.experiments.jobs import current_runs, plan
from tumorlens.explain.refine import tumour_evidence
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import penultimate_features, predict_images
from tumorlens.utils.files import read_json, write_json
from tumorlens.utils.progress import progress

__all__ = [
    "external_folders",
    "run_external",
    "score_runs",
    "compact",
    "profile_runs",
    "HYBRID_FILES",
    "evidence_gate_record",
    "OVERLAP_FILE",
    "overlap_audit",
    "read_optional_external",
]

#: The development copy of BRISC 2025's classification images, beside the repository.
DEV_FOLDER = "brisc2025-cls-dev"


def external_folders(cfg) -> list[Path]:
    """``external.folders``; when null, the development copy ``../shared/data/brisc2025-cls-dev`` if present.
    A folder that does not exist is an error naming it."""
    folders = cfg.external.folders
    if folders is None:
        dev = paths.repo_root().parent / "shared" / "data" / DEV_FOLDER
        return [dev] if dev.is_dir() else []
    missing = [f for f in folders if not paths.resolve(f).is_dir()]
    if missing:
        raise FileNotFoundError(f"external.folders: {', '.join(missing)} not found (a folder of class folders)")
    return [paths.resolve(f) for f in folders]


#: What each run keeps of `score_external` (the published systems keep everything).
_COMPACT = (
    "n",
    "accuracy",
    "accuracy_lo",
    "accuracy_hi",
    "macro_f1",
    "macro_f1_lo",
    "macro_f1_hi",
    "notumor_recall",
    "pred",
)


def compact(score: dict) -> dict:
    """A run's external score without the file lists and the per-class report: the headline numbers
    with their intervals and, per view, the accuracy and the no-tumour recall."""
    return {k: score[k] for k in _COMPACT} | {
        "per_view": {
            v: {"n": d["n"], "accuracy": d["accuracy"], "notumor_recall": d["notumor_recall"]}
            for v, d in score["per_view"].items()
        }
    }


#: The ensemble step's CNN-feature classifiers: system name (as in ``ensembles.json``) -> fitted pipeline file.
HYBRID_FILES = {"CNN+LR": "hybrid_lr.npz", "CNN+SVM": "hybrid_svm.npz"}


def profile_runs(profile: str) -> tuple[list[Path], list[dict] | None, dict[str, Path]]:
    """The profile's complete, current training runs (CNN and ViT; not the other profiles' evidence
    runs), the ensemble step's members and its fitted CNN-feature classifiers (`HYBRID_FILES`; None and
    ``{}`` when that step is not complete and current)."""
    ok, _ = current_runs(profile)
    jobs = [j for j in plan(profile) if j.params.get("profile") == profile and j.run_dir.resolve() in ok]
    runs = [j.run_dir for j in jobs if j.notebook in ("02_train", "02_vit")]
    ens = [j.run_dir for j in jobs if j.notebook == "04_ensembles"]
    if not ens or not (ens[0] / "ensembles.json").is_file():
        return runs, None, {}
    members = read_json(ens[0] / "ensembles.json", schema="ensembles")["members"]
    for k, f in HYBRID_FILES.items():
        legacy = ens[0] / f.replace(".npz", ".joblib")
        if legacy.is_file() and not (ens[0] / f).is_file():
            print(
                f"external: {k} not scored: {paths.relative(legacy)} is a joblib pickle, which is never loaded; "
                "rerun the ensemble step (tumorlens run --only 04_ensembles --force) to write "
                f"{f}",
                file=sys.stderr,
            )
    return runs, members, {k: ens[0] / f for k, f in HYBRID_FILES.items() if (ens[0] / f).is_file()}


def score_runs(
    runs: Sequence[Path],
    sets: Sequence,
    *,
    members: Sequence[dict] | None = None,
    hybrids: dict[str, Path] | None = None,
    n_boot: int = 2000,
    show_progress: bool = True,
) -> tuple[dict, dict]:
    """Score every run's ``model.keras`` on each external set (`load_external`'s `ExternalSet`). ``sets``:
    the sets read at the runs' image size, or a function from an image size to the sets read at it (for
    runs of several input sizes, e.g. EfficientNet-Lite1/Lite2 at their native 240/260 px; each run
    then sees the external images read at its own size). Returns
    ``({run name: {set name: compact score}}, {system: {set: score}})``,
    the second holding the soft vote of ``members`` (the ensemble step's chosen runs, by name) when all
    of them were scored, and each of ``hybrids`` (``{system name: fitted pipeline file}``, the ensemble
    step's CNN-feature classifiers) on the members' concatenated penultimate features. Run names are
    ``<variant>/seed-<n>``, as in the results folder."""
    per_run: dict[str, dict] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    names = [m["name"] for m in members or []]
    sets_at = sets if callable(sets) else (lambda _size: sets)
    ref = [] if callable(sets) else sets  # the same files, labels and views at any size
    for run in progress(runs, desc="external (every run)", unit="run", disable=not show_progress):
        name = f"{Path(run).parent.name}/{Path(run).name}"
        model = load_model(run)
        size = int(model.input_shape[1])
        per_run[name], probs[name] = {}, {}
        ref = sets_at(size)
        for ext in ref:
            if ext.images.shape[1] != size:
                raise ValueError(
                    f"{run}: a {size} px model, but the external set {ext.root} was read at {ext.images.shape[1]} px"
                )
            probs[name][ext.root.name] = predict_images(model, ext.images)
            per_run[name][ext.root.name] = compact(score_external(probs[name][ext.root.name], ext, n_boot=n_boot))
            if hybrids and name in names:  # the members' penultimate features, for the CNN-feature classifiers
                feats.setdefault(name, {})[ext.root.name] = penultimate_features(model, ext.images)
    systems: dict[str, dict] = {}
    if names and all(n in probs for n in names):
        systems["soft voting"] = {
            ext.root.name: compact(
                score_external(soft_vote([probs[n][ext.root.name] for n in names]), ext, n_boot=n_boot)
            )
            for ext in ref
        }
        systems["single best"] = {ext.root.name: per_run[names[0]][ext.root.name] for ext in ref}
    for system, file in (hybrids or {}).items():
        if not (names and all(n in feats for n in names)) or not Path(file).is_file():
            continue
        pipe = load_pipeline(file)  # .npz, no pickle (a joblib file is refused)
        systems[system] = {
            ext.root.name: compact(
                score_external(
                    pipe.predict_proba(np.concatenate([feats[n][ext.root.name] for n in names], axis=1)),
                    ext,
                    n_boot=n_boot,
                )
            )
            for ext in ref
        }
    return per_run, systems


#: The gate thresholds tried (evidence is a probability) and the percentile that makes an image's evidence.
GATE_THRESHOLDS = tuple(np.round(np.linspace(0.0, 0.9, 46), 2))
GATE_PERCENTILE = 99.0


def evidence_gate_record(
    profile: str,
    segmenter,
    size: int,
    ext_sets: Sequence,
    model: str,
    *,
    flip: bool = False,
    show_progress: bool = True,
) -> dict | None:
    """The evidence gate (`tumorlens.evaluation.gate`) of ``model``'s weak-mask network (``segmenter``, at
    input ``size``; ``flip`` as its explain step adopted): each image's evidence on the validation split
    and on each external set, per class, and the gate curve over `GATE_THRESHOLDS` with the threshold
    chosen on validation. ``None`` (with a note) when the dataset is not here to read the validation
    split from."""
    cfg = load_config(profile, overrides={"data.image_size": size})
    try:
        prep = prepare(cfg, show_progress=show_progress)
        x_val, y_val = prep.images("val", show_progress=show_progress), prep.labels("val")
    except (FileNotFoundError, TumorlensError) as e:
        print(f"external: no evidence gate (the validation split is not readable here: {e})", file=sys.stderr)
        return None
    sets = {"validation": (y_val, *tumour_evidence(segmenter, x_val, flip=flip, q=GATE_PERCENTILE))}
    for ext in ext_sets:
        sets[ext.root.name] = (ext.y, *tumour_evidence(segmenter, ext.images, flip=flip, q=GATE_PERCENTILE))
    rows = gate_curve(sets, GATE_THRESHOLDS)
    return {
        "model": model,
        "percentile": GATE_PERCENTILE,
        "flip": flip,
        "sets": list(sets),
        "evidence": {name: evidence_quantiles(y, e) for name, (y, _, e) in sets.items()},
        "curve": rows,
        "chosen": choose_threshold(rows, "validation")
        | {"rule": "best validation accuracy (lowest threshold on ties)"},
    }


def _report_unscored(ext) -> None:
    """Say on stderr which entries of an external folder were not scored, and why (nothing goes unsaid)."""
    items = [*ext.report.bad, *ext.report.ignored]
    if not items:
        return
    print(
        f"external: {ext.root.name}: {len(ext.report.bad)} unreadable image(s) and {len(ext.report.ignored)} "
        "other item(s) not scored:",
        file=sys.stderr,
    )
    for b in items:
        print(f"  {b['path']}: {b['reason']}", file=sys.stderr)


def run_external(
    profile: str = published.PUBLISHED_PROFILE,
    folders: Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    show_progress: bool = True,
    runs: bool = True,
) -> dict:
    """Score the published single model and ensemble on ``folders`` (default: the profile's
    `external_folders`), and (``runs``) every complete, current run of the profile with the soft vote of
    the ensemble step's members; write and return the record (``out=""``: not written). Without any
    current run here (a fresh clone) the per-run scores of the record already written are kept."""
    cfg = load_config(profile)
    roots = [Path(f) for f in folders] if folders else external_folders(cfg)
    if not roots:
        raise FileNotFoundError(
            "no external folder: set external.folders in _config.yml or pass --folder DIR (class folders)"
        )
    mf = published.read_manifest(profile)
    single = published.load(mf["single"], profile)
    members = [published.load(n, profile) for n in mf["ensemble"] if n != mf["single"]]
    size = int(mf["models"][mf["single"]]["recipe"]["image_size"])
    by_size: dict[int, list] = {}  # each model sees the sets read at its own input size, each size read once

    def sets_at(side: int) -> list:
        if side not in by_size:
            by_size[side] = [load_external(r, side, show_progress=show_progress) for r in roots]
        return by_size[side]

    sets = []
    others = [n for n in mf["ensemble"] if n != mf["single"]]
    published_runs: dict[str, dict] = {}  # the published models are runs of the profile: their per-run scores
    for i, root in enumerate(roots):
        ext = sets_at(size)[i]
        _report_unscored(ext)
        p_single = predict_images(single, ext.images)
        systems = {f"single: {mf['single']}": score_external(p_single, ext, n_boot=cfg.external.n_boot)}
        published_runs.setdefault(mf["single"], {})[root.name] = compact(systems[f"single: {mf['single']}"])
        if members and mf["single"] in mf["ensemble"]:
            at_side = [sets_at(int(m.inputs[0].shape[1]))[i] for m in members]  # each member at its own side
            p_members = [predict_images(m, e.images) for m, e in zip(members, at_side)]
            for n, p, e in zip(others, p_members, at_side):
                published_runs.setdefault(n, {})[root.name] = compact(score_external(p, e, n_boot=cfg.external.n_boot))
            p_ens = soft_vote([p_single, *p_members])
            systems[f"soft voting: {' + '.join(mf['ensemble'])}"] = score_external(
                p_ens, ext, n_boot=cfg.external.n_boot
            )
        sets.append({"name": root.name, "paths": ext.paths, "y": ext.y.astype(int).tolist(), "systems": systems})
    record = {"profile": profile, "models": {"single": mf["single"], "ensemble": mf["ensemble"]}, "sets": sets}
    segmenter = published.load_segmenter(single, profile) if mf.get("segmentation") else None
    if segmenter is not None:
        segment = read_json(published.models_dir(profile) / mf["segmentation"]["segment"], schema="segment")
        record["evidence_gate"] = evidence_gate_record(
            profile,
            segmenter,
            size,
            sets_at(size),
            mf["single"],
            flip=bool(segment.get("network_flip", False)),
            show_progress=show_progress,
        )
    res = results_dir(profile)
    target = Path(out) if out else res / "external.json"
    run_dirs, members, hybrids = profile_runs(profile) if runs else ([], None, {})
    if run_dirs:
        record["runs"], record["ensemble_systems"] = score_runs(
            run_dirs,
            sets_at,
            members=members,
            hybrids=hybrids,
            n_boot=cfg.external.n_boot,
            show_progress=show_progress,
        )
        if target.is_file():  # runs published but not in runs/ here keep the scores already recorded for them
            old = read_json(target, schema="external")
            record["runs"] = {**old.get("runs", {}), **record["runs"]}
            record["ensemble_systems"] = record["ensemble_systems"] or old.get("ensemble_systems", {})
    elif runs and target.is_file():
        old = read_json(target, schema="external")
        record |= {k: old[k] for k in ("runs", "ensemble_systems") if k in old}
        print(
            f"external: no current run of profile {profile!r} here; the per-run scores already in "
            f"{paths.relative(target)} are kept",
            file=sys.stderr,
        )
    # the published models' own per-run scores replace what was recorded for those runs (the same weights)
    record["runs"] = {**record.get("runs", {}), **published_runs}
    if out != "":
        write_json(target, record, schema="external")
        if target.parent == res and (res / MANIFEST).is_file():
            refresh_tables(profile)  # the RQ tables and summary.json carry the per-run external scores
            write_manifest(res, profile, files=[target, res / "rq.json", res / "summary.json"])
    return record


#: Where `overlap_audit` writes its record, under ``results/<profile>/``.
OVERLAP_FILE = "data/brisc_overlap.json"


def _subset(ext: ExternalSet, keep: np.ndarray) -> ExternalSet:
    """``ext`` restricted to the images where ``keep`` is true (same root; its scan's records filtered)."""
    import copy

    idx = np.flatnonzero(keep)
    report = copy.copy(ext.report)
    report.records = [ext.report.records[i] for i in idx]
    return ExternalSet(ext.root, report, ext.images[idx], ext.y[idx], [ext.views[i] for i in idx])


def _overlap_score(probs: np.ndarray, ext: ExternalSet, n_boot: int) -> dict:
    """`compact` scores plus the per-class report and the confusion matrix (for the book's tables)."""
    full = score_external(probs, ext, n_boot=n_boot)
    m = full["metrics"]
    return compact(full) | {"per_class": m["per_class"], "confusion_matrix": m["confusion_matrix"]}


def overlap_audit(
    profile: str = published.PUBLISHED_PROFILE,
    folders: Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict:
    """The project's duplicate audit run *across* releases: every image of each external folder (default:
    the profile's `external_folders`, BRISC 2025's development copy) against the Kaggle **Training**
    split (and, for the record, Testing), with the leakage audit's own rule (``audit.*``: exact bytes, or
    perceptual hash within ``hash_distance`` bits and thumbnail correlation at least ``correlation``;
    `tumorlens.data.leakage.cross_pairs`). The published single model and ensemble are scored again on
    every image and on the images with **no** copy in Training (the predictions recomputed from
    ``models/<profile>/``, as `run_external` does; ``predictions_match_external_json`` says whether
    they give ``external.json``'s accuracy).

    Writes ``results/<profile>/data/brisc_overlap.json`` (`OVERLAP_FILE`; ``out=""``: not written) and its
    manifest entry; returns the record. Keys: ``profile``, ``reference`` (the Kaggle dataset's identity,
    split sizes), ``params``, ``models``, and ``sets``: per folder ``name``, ``dataset``, ``n_images``,
    ``per_class`` / ``per_view`` / ``total`` counts (``n``, ``exact``, ``near``, ``any`` copy in Training,
    ``in_testing``: a copy in Kaggle Testing, ``kept``: no copy in Training), ``with_copy`` (each file
    with a copy in Training: ``file``, ``class``, ``view``, ``kind``, its closest ``training`` image,
    ``training_class``, ``same_class``, ``hamming``, ``correlation``, ``n_copies``), ``systems`` (per
    system ``all`` and ``no_copy``: `compact` scores with ``per_class`` and ``confusion_matrix``) and
    ``predictions_match_external_json``."""
    cfg = load_config(profile)
    roots = [Path(f) for f in folders] if folders else external_folders(cfg)
    if not roots:
        raise FileNotFoundError("no external folder: set external.folders in _config.yml or pass folders")
    kaggle = scan(cfg.data_root, show_progress=show_progress)
    a = cfg.audit
    params = {"thumb_size": a.thumb_size, "hash_distance": a.hash_distance, "correlation": a.correlation}
    by_split = {sp: [r for r in kaggle.records if r.split == sp] for sp in ("Training", "Testing")}
    if not by_split["Training"]:
        raise FileNotFoundError(f"{cfg.data_root}: no Kaggle Training images to compare against")
    ref_fp = {sp: fingerprints(recs, a.thumb_size, show_progress) for sp, recs in by_split.items() if recs}
    mf = published.read_manifest(profile)
    single = published.load(mf["single"], profile)
    members = [published.load(n, profile) for n in mf["ensemble"] if n != mf["single"]]
    size = int(mf["models"][mf["single"]]["recipe"]["image_size"])
    published_ext = read_optional_external(profile)
    n_boot = cfg.external.n_boot
    sets = []
    for root in roots:
        ext = load_external(root, size, show_progress=show_progress)
        fp = fingerprints(ext.report.records, a.thumb_size, show_progress)
        hits = {sp: cross_pairs(fp, f, a.hash_distance, a.correlation) for sp, f in ref_fp.items()}
        train = by_split["Training"]
        best: dict[int, tuple] = {}
        copies: dict[int, int] = {}
        for i, j, kind, ham, corr in hits["Training"]:
            copies[i] = copies.get(i, 0) + 1
            key = (kind == "exact", train[j].cls == ext.report.records[i].cls, corr, -ham)
            if i not in best or key > best[i][0]:
                best[i] = (key, j, kind, ham, corr)
        in_testing = {i for i, *_ in hits.get("Testing", [])}
        recs = ext.report.records
        with_copy = [
            {
                "file": recs[i].rel,
                "class": recs[i].cls,
                "view": ext.views[i],
                "kind": kind,
                "training": train[j].rel,
                "training_class": train[j].cls,
                "same_class": train[j].cls == recs[i].cls,
                "hamming": int(ham),
                "correlation": round(float(corr), 4),
                "n_copies": copies[i],
            }
            for i, (_, j, kind, ham, corr) in sorted(best.items())
        ]

        def counts(sel: np.ndarray) -> dict:
            idx = np.flatnonzero(sel)
            kinds = [best[i][2] if i in best else None for i in idx]
            return {
                "n": int(len(idx)),
                "exact": sum(k == "exact" for k in kinds),
                "near": sum(k == "near" for k in kinds),
                "any": sum(k is not None for k in kinds),
                "in_testing": sum(int(i) in in_testing for i in idx),
                "kept": sum(k is None for k in kinds),
            }

        cls = np.array([r.cls for r in recs])
        views = np.array(ext.views)
        keep = np.array([i not in best for i in range(len(recs))])
        p_single = predict_images(single, ext.images)
        probs = {f"single: {mf['single']}": p_single}
        if members and mf["single"] in mf["ensemble"]:
            by_size = {size: ext}
            for m in members:
                side = int(m.inputs[0].shape[1])
                if side not in by_size:
                    by_size[side] = load_external(root, side, show_progress=show_progress)
            probs[f"soft voting: {' + '.join(mf['ensemble'])}"] = soft_vote(
                [p_single, *[predict_images(m, by_size[int(m.inputs[0].shape[1])].images) for m in members]]
            )
        sub = _subset(ext, keep)
        systems = {
            name: {"all": _overlap_score(p, ext, n_boot)}
            | ({"no_copy": _overlap_score(p[keep], sub, n_boot)} if keep.any() else {})
            for name, p in probs.items()
        }
        published_acc = {
            name: m["accuracy"]
            for s_ in (published_ext or {}).get("sets", [])
            if s_["name"] == root.name
            for name, m in s_["systems"].items()
        }
        sets.append(
            {
                "name": root.name,
                "dataset": ext.report.dataset(),
                "n_images": len(recs),
                "per_class": {c: counts(cls == c) for c in CLASSES if (cls == c).any()},
                "per_view": {v: counts(views == v) for v in sorted(set(ext.views))},
                "total": counts(np.ones(len(recs), bool)),
                "with_copy": with_copy,
                "systems": systems,
                "predictions_match_external_json": bool(published_acc)
                and all(abs(published_acc.get(n, -1) - systems[n]["all"]["accuracy"]) < 1e-9 for n in systems),
            }
        )
    record = {
        "profile": profile,
        "reference": {
            "dataset": kaggle.dataset(),
            "split": "Training",
            "n_training": len(by_split["Training"]),
            "n_testing": len(by_split["Testing"]),
        },
        "params": params | {"rule": "the leakage audit's rule (audit.* in _config.yml)"},
        "models": {"single": mf["single"], "ensemble": mf["ensemble"]},
        "sets": sets,
    }
    if out != "":
        res = results_dir(profile)
        target = Path(out) if out else res / OVERLAP_FILE
        write_json(target, record, schema="brisc_overlap")
        if target.is_relative_to(res) and (res / MANIFEST).is_file():
            write_manifest(res, profile, files=[target])
    return record


def read_optional_external(profile: str) -> dict | None:
    """The profile's published ``external.json``, or None."""
    f = results_dir(profile) / "external.json"
    return read_json(f, schema="external") if f.is_file() else None
