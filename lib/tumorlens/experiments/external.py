"""``tumorlens external``: the published models scored on external folders (another release's images).

    tumorlens external --profile cpu                 # the folders of `external.folders` in _config.yml
    tumorlens external --folder path/to/class-folders

The published single model and the published ensemble (`tumorlens.experiments.published`) are scored
on each folder (`tumorlens.evaluation.external`); the record goes to ``results/<profile>/external.json``,
which the book's results page reads. External folders are for reporting only: nothing is trained,
chosen or tuned on them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tumorlens import paths
from tumorlens.config import load_config
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.evaluation.external import load_external, score_external
from tumorlens.experiments import published
from tumorlens.experiments.collect import MANIFEST, results_dir, write_manifest
from tumorlens.models.inference import predict_images
from tumorlens.utils.files import write_json

__all__ = ["external_folders", "run_external"]

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


def run_external(
    profile: str = published.PUBLISHED_PROFILE,
    folders: Sequence[str | os.PathLike] | None = None,
    *,
    out: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict:
    """Score the published single model and ensemble on ``folders`` (default: the profile's
    `external_folders`); write and return the record (``out=""``: not written)."""
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
    sets = []
    for root in roots:
        ext = load_external(root, size, show_progress=show_progress)
        p_single = predict_images(single, ext.images)
        systems = {f"single: {mf['single']}": score_external(p_single, ext, n_boot=cfg.external.n_boot)}
        if members and mf["single"] in mf["ensemble"]:
            p_ens = soft_vote([p_single, *[predict_images(m, ext.images) for m in members]])
            systems[f"soft voting: {' + '.join(mf['ensemble'])}"] = score_external(
                p_ens, ext, n_boot=cfg.external.n_boot
            )
        sets.append({"name": root.name, "systems": systems})
    record = {"profile": profile, "models": {"single": mf["single"], "ensemble": mf["ensemble"]}, "sets": sets}
    if out != "":
        res = results_dir(profile)
        target = Path(out) if out else res / "external.json"
        write_json(target, record, schema="external")
        if target.parent == res and (res / MANIFEST).is_file():
            write_manifest(res, profile, files=[target])
    return record
