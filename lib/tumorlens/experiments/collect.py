"""Collect a profile's runs into the compact results the book reads, and answer RQ1-RQ5.

    collect("cpu")   # runs/cpu/...  ->  results/cpu/...

``results/<profile>/`` holds only small files — metrics, per-image predictions (paths relative to
the dataset root), training histories, segmentation scores, the raw low-resolution CAMs of the
gallery images — never model weights nor dataset images. `make book` renders the book from it
without retraining; the galleries are redrawn from the dataset when it is present.

Research questions (each answered with paired tests on identical test images, on the official
Testing split and on its de-duplicated subset):

- RQ1: do MAB, ResPath and SBR (together, and each alone) improve on the standard backbone?
- RQ2: do ensembles (soft voting, CNN features + LR / SVM) improve on the single best model?
- RQ3: how well do the explanations (the paper's Grad-CAM + GrabCut and the maps and weak-mask network that
  improve on it) outline the tumours (Dice, IoU, pointing game)?
- RQ4: does partial fine-tuning improve on warm-up (frozen backbone) alone?
- RQ5: how does a minimal ViT trained from scratch compare with the transfer-learned CNN?
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import nbformat

from tumorlens import paths
from tumorlens.config import Config, load_config, settings_fingerprint
from tumorlens.experiments import published
from tumorlens.experiments.figures import render_figures
from tumorlens.experiments.jobs import (
    DONE,
    JOB_RECORDS,
    PLAN_PARTS,
    _differences,
    job_inputs,
    job_state,
    plan,
    portable_inputs,
    published_records,
    results_location,
    run_name,
    upstream_runs,
)
from tumorlens.experiments.rq import rq_tables
from tumorlens.experiments.steps import STEPS
from tumorlens.models.costs import block_costs
from tumorlens.records import (
    CONFIG,
    FULL_RUN,
    MODEL,
    PUBLISHED_RUNS,
    RUN_FILES,
    RUN_INFO,
    TEST_SETS,
    end_to_end_file,
)
from tumorlens.utils.environment import environment
from tumorlens.utils.files import file_entry, matches_entry, read_json, updating, write_json
from tumorlens.utils.schema import SCHEMA_KEY

__all__ = [
    "results_dir",
    "collect",
    "refresh_tables",
    "targets",
    "write_manifest",
    "check_results",
    "adopt_published",
    "publish_job",
    "restore_job",
    "published_weights",
    "MANIFEST",
]


def results_dir(profile: str) -> Path:
    return paths.results_root() / profile


def _copy_run(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    info = read_json(src / CONFIG, schema="run")
    info["summary"]["run_dir"] = f"{src.parent.name}/{src.name}"
    write_json(dest / RUN_INFO, info, schema="run")


#: The parts of ``results/<profile>/`` that `collect` can refresh on their own (``only``); ``figures``
#: re-renders the figures of scans from the data at hand (`tumorlens.experiments.figures`) and nothing else.
FIGURES_PART = "figures"
PARTS: tuple[str, ...] = (
    PUBLISHED_RUNS,
    "smoke_backbones",
    "data",
    "ensembles",
    "segmentation",
    "robustness",
    FIGURES_PART,
)


def collect(
    profile: str,
    *,
    runs_root: Path | None = None,
    out: Path | None = None,
    n_boot: int = 2000,
    only: Sequence[str] | None = None,
) -> Path:
    """Copy a profile's finished runs into ``results/<profile>/`` in compact form and compute the
    RQ tables, the module cost table and the headline ``summary.json``. Returns the folder.

    ``only`` refreshes just those parts (of `PARTS`) from ``runs_root`` and keeps the others as they
    are (e.g. ``["segmentation"]`` after rerunning the explain step alone); the RQ tables and the
    headline are recomputed from the whole folder, and in the reproduction time the jobs rerun since
    the last full collect replace their earlier entries.
    """

    cfg = load_config(profile)
    runs_root = Path(runs_root) if runs_root else cfg.runs_root
    res = Path(out) if out else results_dir(profile)
    parts = tuple(only) if only else PARTS
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"only: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if only and not (res / "reproduction.json").is_file():
        raise FileNotFoundError(f"{res}: no earlier full collect to refresh parts of; run collect without only first")
    if parts == (FIGURES_PART,):  # the figures alone: no run is read, no table recomputed
        written = render_figures(profile, res)
        if written:
            write_manifest(res, profile, files=written)
        return res
    res.mkdir(parents=True, exist_ok=True)
    records = _gather(profile, cfg, runs_root, res, parts)
    make_portable(res, cfg)
    if FIGURES_PART in parts:  # what the data at hand can redraw (the book shows them without the data)
        render_figures(profile, res)
    rq = rq_tables(res, cfg, n_boot=n_boot)
    write_json(res / "rq.json", rq, schema="rq")
    write_json(
        res / "block_costs.json",
        {"image_size": cfg.data.image_size, "blocks": block_costs(image_size=cfg.data.image_size)},
        schema="block_costs",
    )
    timing = _reproduction_time(runs_root, cfg.reproduce.other_backbones, profile)
    if (res / "reproduction.json").is_file():  # the jobs rerun since the last collect replace their own entries
        old = read_json(res / "reproduction.json", schema="reproduction")
        timing = _merge_timing(old, timing, keep={r for r in records})
    timing = _totals(_current_parts(timing["jobs"], profile))
    timing |= _end_to_end(runs_root, res, profile)
    write_json(res / "reproduction.json", timing, schema="reproduction")
    write_json(res / "summary.json", _headline(res, rq, cfg, timing, environment()), schema="summary")
    write_json(res / JOB_RECORDS, {"profile": profile, "jobs": dict(sorted(records.items()))}, schema="jobs")
    write_manifest(res, profile)
    return res


#: What a job's published folder may hold besides its products: the folders of other jobs published inside
#: it (the explain step's seed replicates under segmentation/seeds/, the localisation ablation's folder).
_NESTED = {"segmentation": ("seeds", "localisation")}


def _clear(dest: Path, step: str | None = None) -> None:
    """Empty a job's published folder of its step's published products (all files when ``step`` is None),
    keeping the folders of jobs published inside it (`_NESTED`) and what other steps put there (the figures
    `render_figures` draws, the cross-release audit)."""
    keep = _NESTED.get(dest.name, ())
    if not dest.is_dir():
        return
    pats = None if step is None else [p for p in STEPS[step].products if p.published]
    for f in sorted(dest.rglob("*"), reverse=True):
        rel = f.relative_to(dest).as_posix()
        if rel.split("/")[0] in keep:
            continue
        if f.is_file() and (pats is None or any(p.matches(rel) for p in pats)):
            f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()


def _publish_job(job, src: Path, dest: Path) -> None:
    """Replace ``dest``'s published products by those of the job that ran in ``src`` (`steps.STEPS`)."""
    _clear(dest, job.notebook)
    dest.mkdir(parents=True, exist_ok=True)
    step = STEPS[job.notebook]
    if job.notebook in ("02_train", "02_vit"):
        _copy_run(src, dest)
        return
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src).as_posix()
        if f.is_file() and not rel.startswith(".") and any(p.published and p.matches(rel) for p in step.products):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / rel)


def _job_record(job, profile: str) -> dict:
    """The published record of a job that completed in runs/ (its ``.done.json``, paths made portable)."""
    done = json.loads((job.run_dir / DONE).read_text())
    return {
        "step": job.notebook,
        "inputs": portable_inputs(done["inputs"], profile),
        "finished": done.get("finished"),
        "commit": done.get("commit"),
        "code": done.get("code"),
        "seconds": done.get("seconds"),
    }


def _gather(profile: str, cfg, runs_root: Path, res: Path, parts: Sequence[str]) -> dict[str, dict]:
    """Publish each planned job of the ``parts`` into ``res``: a job complete and current in runs/ replaces
    its published copy; a published copy that is still current (`jobs.job_state`) stays as it is; any
    other published copy is removed (stale, or no longer planned). A ``runs_root`` other than the profile's
    holds the plan's jobs under it instead (a copy of runs/ elsewhere); a job it does not hold (the other
    backbones' smoke runs) is read where the plan puts it. Returns the job records of
    everything published (`jobs.JOB_RECORDS`)."""
    old = read_json(res / JOB_RECORDS).get("jobs", {}) if (res / JOB_RECORDS).is_file() else {}
    records: dict[str, dict] = {}
    located = set()
    home = cfg.runs_root.resolve()

    def relocated(job):
        d = job.run_dir.resolve()
        if runs_root.resolve() == home or not d.is_relative_to(home):
            return job
        there = runs_root / d.relative_to(home)
        return dataclasses.replace(job, run_dir=there) if there.is_dir() else job

    part_of = {"02_train": PUBLISHED_RUNS, "02_vit": PUBLISHED_RUNS, "01_data": "data", "03_explain": "segmentation"}
    part_of |= {"03_localisation": "segmentation", "04_ensembles": "ensembles", "05_robustness": "robustness"}
    for planned in plan(profile):
        job = relocated(planned)
        dest = results_location(job, res)
        name = run_name(planned.run_dir, profile)
        part = "smoke_backbones" if "smoke_backbones" in dest.parts else part_of.get(job.notebook)
        located.add(dest.resolve())
        if part not in parts:
            if name in old:
                records[name] = old[name]
            continue
        state, why = job_state(job, results_profile=profile)
        if state == "current":
            _publish_job(job, job.run_dir, dest)
            records[name] = _job_record(job, profile)
        elif state == "published":
            records[name] = old[name]
        else:
            if dest.exists() and job.run_dir.exists() or name in old:
                print(f"collect: leaving out {name}: {'; '.join(why)}", file=sys.stderr)
            _clear(dest, job.notebook)
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
    for top in (PUBLISHED_RUNS, "smoke_backbones"):  # folders of jobs no longer planned
        if top in parts and (res / top).is_dir():
            for d in sorted((res / top).glob("*/seed-*")):
                if d.resolve() not in located:
                    shutil.rmtree(d)
            for d in sorted((res / top).iterdir()):
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return records


def refresh_tables(profile: str, *, n_boot: int = 2000) -> Path:
    """Recompute ``rq.json`` and ``summary.json`` from what ``results/<profile>/`` already holds (after a
    side step such as `tumorlens external` added to it); the runs are not read again."""
    cfg = load_config(profile)
    res = results_dir(profile)
    rq = rq_tables(res, cfg, n_boot=n_boot)
    write_json(res / "rq.json", rq, schema="rq")
    timing = read_json(res / "reproduction.json", schema="reproduction")
    write_json(res / "summary.json", _headline(res, rq, cfg, timing, environment()), schema="summary")
    return res


MANIFEST = "manifest.json"


def _entry(path: Path) -> dict:
    entry = file_entry(path)
    if path.suffix == ".json":
        found = read_json(path).get(SCHEMA_KEY)
        entry["schema"] = f"{found['name']}/{found['version']}" if isinstance(found, dict) else None
    return entry


def write_manifest(res: Path, profile: str, files: Sequence[Path] | None = None) -> Path:
    """``results/<profile>/manifest.json``: every published file with its size, sha256 and schema, and the
    dataset's identity. ``files``: refresh only these entries (e.g. ``bench.json`` written after collect)."""
    res = Path(res)
    mf = res / MANIFEST
    with updating(mf):  # commands refreshing their own entries at once keep each other's
        if files is not None and mf.is_file():
            entries = read_json(mf, schema="manifest")["files"]
            entries |= {Path(f).relative_to(res).as_posix(): _entry(Path(f)) for f in files}
        else:
            entries = {
                f.relative_to(res).as_posix(): _entry(f)
                for f in sorted(res.rglob("*"))
                if f.is_file() and f.name != MANIFEST and not f.name.startswith(".")
            }
        scan = res / "data" / "scan.json"
        dataset = read_json(scan, schema="scan")["dataset"] if scan.is_file() else None
        return write_json(
            mf, {"profile": profile, "dataset": dataset, "files": dict(sorted(entries.items()))}, schema="manifest"
        )


def check_results(res: str | Path) -> list[str]:
    """Problems that make ``res`` unfit to publish, one line each naming the file: no manifest, a listed file
    missing or changed since `collect` (partial or edited), a file collect did not write, a JSON file of
    another schema version or missing keys. An empty list means the book may be built from it."""
    res = Path(res)
    mf = res / MANIFEST
    if not mf.is_file():
        return [f"{mf.as_posix()}: missing; run `tumorlens collect` to publish results with their manifest"]
    try:
        entries = read_json(mf, schema="manifest")["files"]
    except ValueError as e:
        return [str(e)]
    problems = []
    for rel, entry in entries.items():
        f = res / rel
        if not f.is_file():
            problems.append(f"{f.as_posix()}: listed in {MANIFEST} but missing")
        elif not matches_entry(f, entry):
            problems.append(f"{f.as_posix()}: changed since it was collected (partial or edited); rerun collect")
        elif entry.get("schema") is not None:
            name = entry["schema"].split("/")[0]
            try:
                read_json(f, schema=name)
            except ValueError as e:
                problems.append(str(e))
        elif f.suffix == ".json":
            problems.append(f"{f.as_posix()}: a results file without a schema version; rerun its step and collect")
    for f in sorted(res.rglob("*")):
        rel = f.relative_to(res).as_posix()
        if f.is_file() and f.name != MANIFEST and not f.name.startswith(".") and rel not in entries:
            problems.append(f"{f.as_posix()}: not written by collect (absent from {MANIFEST})")
    return problems


def _portable_path(value: str, cfg) -> str:
    """An absolute path as the results may publish it: inside the repository, relative to it; the
    dataset, ``$TUMORLENS_DATA``; the cache, ``$TUMORLENS_CACHE``; anywhere else, ``<outside>/<name>``."""
    if not value.startswith("/"):
        return value
    for root, label in (
        (paths.repo_root().resolve(), ""),
        (Path(cfg.data_root).resolve(), "$TUMORLENS_DATA"),
        (paths.cache_root().resolve(), "$TUMORLENS_CACHE"),
    ):
        p = Path(value)
        if p == root or root in p.parents:
            rel = str(p.relative_to(root))
            return rel if not label else (label if rel == "." else f"{label}/{rel}")
    return f"<outside>/{Path(value).name}"


_PATH_KEYS = frozenset({"root", "data_root", "run_dir", "model", "masks", "missing", "candidate_runs", "runs"})


def make_portable(res: Path, cfg) -> int:
    """Rewrite absolute paths in the results' JSON files (dataset roots, run folders) so that no
    committed file names a folder of the machine it was collected on. Returns the files changed."""

    def fix(obj, key=None):
        if isinstance(obj, dict):
            return {k: fix(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [fix(v, key) for v in obj]
        if isinstance(obj, str) and key in _PATH_KEYS:
            return _portable_path(obj, cfg)
        return obj

    changed = 0
    for f in sorted(res.rglob("*.json")):
        data = json.loads(f.read_text())
        new = fix(data)
        if new != data:
            write_json(f, new)
            changed += 1
    return changed


def _reproduction_time(runs_root: Path, other_backbones=(), profile: str | None = None) -> dict:
    """Seconds per executed notebook (from the runner's records) and their total: the profile's own
    jobs plus the smoke-profile runs of ``other_backbones`` its plan includes, named as the job records name
    them (``cpu/efficientnet_lite1/seed-43``, whatever folder ``runs_root`` is); with ``profile``, each
    job's part of the plan (`PLAN_PARTS`) and the seconds summed per part."""
    jobs = []
    parts = {j.run_dir.resolve(): j.part for j in plan(profile)} if profile else {}
    smoke_root = load_config("smoke").runs_root
    home = load_config(profile).runs_root.name if profile else runs_root.name  # named as the job records name them
    extra = (
        []
        if runs_root == smoke_root
        else [d for b in other_backbones for d in smoke_root.glob(f"{b}/seed-*/.done.json")]
    )
    for done in sorted([*runs_root.rglob(".done.json"), *extra]):
        d = json.loads(done.read_text())
        d_ = done.parent
        if d_.is_relative_to(runs_root):
            name = f"{home}/{d_.relative_to(runs_root).as_posix()}"
        elif d_.is_relative_to(smoke_root.parent):
            name = d_.relative_to(smoke_root.parent).as_posix()
        else:
            name = str(d_)
        jobs.append(
            {"job": name, "notebook": d["notebook"], "seconds": d.get("seconds")}
            | ({"part": parts.get(done.parent.resolve())} if parts else {})
        )
    return _totals(jobs)


def _current_parts(jobs: list[dict], profile: str) -> list[dict]:
    """The jobs with the part of the plan each belongs to now (a job timed before the plan had its study
    part keeps the seconds it took, under the part it is in today)."""
    now = {run_name(j.run_dir, profile): j.part for j in plan(profile)}
    return [j | ({"part": now[j["job"]]} if j["job"] in now and "part" in j else {}) for j in jobs]


def _totals(jobs: list[dict]) -> dict:
    total = sum(j["seconds"] or 0 for j in jobs)
    out = {"jobs": jobs, "total_seconds": round(total, 1), "total_minutes": round(total / 60, 1)}
    if any(j.get("part") for j in jobs):
        out["part_minutes"] = {
            p: round(sum(j["seconds"] or 0 for j in jobs if j.get("part") == p) / 60, 1)
            for p in PLAN_PARTS
            if any(j.get("part") == p for j in jobs)
        }
    return out


def _end_to_end(runs_root: Path, res: Path | None, profile: str | None = None) -> dict:
    """The measured end-to-end times (`tumorlens.experiments.runner.record_end_to_end`): per scope
    (``all``: one invocation ran every job of the profile; or one of `PLAN_PARTS`) the last such run, with
    the jobs of that scope rerun after it (their results are newer than that run), in
    ``end_to_end_parts``. ``end_to_end_minutes``/``end_to_end``: the headline part's when measured (the
    scope the time target is set for), else the whole profile's. Without any record: the ones already
    in ``res`` (a partial collect), else nothing."""
    scopes = {}
    for part in (None, *PLAN_PARTS):
        f = runs_root / end_to_end_file(part)
        if not f.is_file():
            continue
        rec = {"part": "all"} | {k: v for k, v in read_json(f, schema="end_to_end").items() if k != SCHEMA_KEY}
        dirs = [j.run_dir for j in plan(profile, part)] if profile else [d.parent for d in runs_root.rglob(DONE)]
        rec["jobs_rerun_since"] = _rerun_since(dirs, f, runs_root)
        scopes[rec["part"]] = rec
    f = res / "reproduction.json" if res else None
    old = read_json(f, schema="reproduction") if f and f.is_file() else {}
    full = _full_run(runs_root, profile) or old.get("full_run")
    if scopes:
        main = scopes.get(PLAN_PARTS[0]) or scopes.get("all") or next(iter(scopes.values()))
        out = {"end_to_end_minutes": main["minutes"], "end_to_end": main, "end_to_end_parts": scopes}
        return out | ({"full_run": full} if full else {})
    keys = ("end_to_end_minutes", "end_to_end", "end_to_end_parts", "full_run")
    return {k: old[k] for k in keys if k in old}


def _full_run(runs_root: Path, profile: str | None) -> dict | None:
    """The last `make reproduce` (`tumorlens.experiments.runner.record_full_run`), with the jobs of its
    parts that ran again after it (``jobs_rerun_since``); None without one."""
    f = runs_root / FULL_RUN
    if not f.is_file():
        return None
    rec = {k: v for k, v in read_json(f, schema="full_run").items() if k != SCHEMA_KEY}
    dirs = [j.run_dir for p in rec["parts"] for j in plan(profile, p)] if profile else []
    rec["jobs_rerun_since"] = _rerun_since(dirs, f, runs_root)
    return rec


def _rerun_since(dirs, record: Path, runs_root: Path) -> list[str]:
    """The run folders of ``dirs`` whose jobs completed after ``record`` was written."""
    written = record.stat().st_mtime
    return sorted(_under(d, runs_root) for d in dirs if (d / DONE).is_file() and (d / DONE).stat().st_mtime > written)


def _under(d: Path, root: Path) -> str:
    """``d`` relative to ``root`` when inside it, else to the repository."""
    d, root = d.resolve(), root.resolve()
    return str(d.relative_to(root)) if d.is_relative_to(root) else paths.relative(d)


def _merge_timing(old: dict, new: dict, keep: set[str] | None = None) -> dict:
    """``old``'s jobs with those also in ``new`` replaced by ``new``'s (rerun since), and ``new``'s others
    added; with ``keep``, only jobs named in it (the published ones). Totals recomputed."""
    fresh = {j["job"]: j for j in new["jobs"]}
    jobs = [fresh.pop(j["job"], j) for j in old["jobs"]] + list(fresh.values())
    return _totals([j for j in jobs if keep is None or j["job"] in keep])


def _headline(res: Path, rq: dict, cfg, timing: dict, env: dict) -> dict:
    ext_keys = ("external_accuracy", "external_macro_f1", "external_notumor_recall")
    models = {
        k: {
            kk: v[kk]
            for kk in ("official_accuracy", "official_macro_f1", "dedup_accuracy", "dedup_macro_f1", "wall_seconds")
        }
        | {kk: v[kk] for kk in ext_keys if kk in v}
        for k, v in rq["runs"].items()
    }
    ens = {
        k: {f"{t}_{m}": v[t][m] for t in TEST_SETS for m in ("accuracy", "macro_f1")}
        | (
            {f"external_{m}": v["external"][m] for m in ("accuracy", "macro_f1", "notumor_recall")}
            if "external" in v
            else {}
        )
        for k, v in rq.get("rq2", {}).get("systems", {}).items()
    }
    seg = rq.get("rq3", {}).get("summary", {}).get("per_class", {}).get("all", {})
    seg_h = {
        f"{m}_{k}_{s}": seg[f"{m}_{k}"][s]
        for m in ("dice", "iou")
        for k in ("cam", "grabcut")
        for s in ("mean", "median")
        if seg.get(f"{m}_{k}")
    }
    if seg:
        for key in ("pointing", "pointing_near", "centre_pointing", "centre_pointing_near"):
            seg_h[key.replace("pointing", "pointing_game")] = seg.get(key)
        summ = rq.get("rq3", {}).get("summary", {})
        seg_h["model"] = summ.get("model")
        seg_h["map"], seg_h["mask"] = summ.get("map"), summ.get("mask")
        for r in summ.get("methods") or []:
            if r["paper"]:
                seg_h["paper_dice_mean"] = r["dice_mean"]
            if (r["map"], r["mask"]) == (summ.get("map"), summ.get("mask")):
                seg_h["adopted_dice_mean"], seg_h["adopted_pointing"] = r["dice_mean"], r["pointing"]
        over_seeds = rq["rq3"].get("seeds")
        if over_seeds:  # the same explain step on the explained recipe's other seeds
            seg_h["seeds"] = [r["seed"] for r in over_seeds["rows"]]
            for key in ("dice_mean", "pointing"):
                seg_h[f"adopted_{key}_over_seeds"] = {k: over_seeds[key][k] for k in ("mean", "sd", "n")}
    return {
        "profile": cfg.profile,
        "data": "synthetic phantoms" if cfg.data.source == "phantoms" else "Kaggle Brain Tumor MRI",
        "image_size": cfg.data.image_size,
        "models": models,
        "ensembles": ens,
        "segmentation": seg_h,
        "external_set": rq.get("external_set"),
        "targets": targets(rq, timing, cfg),
        "reproduction_minutes": timing["total_minutes"],
        "end_to_end_minutes": timing.get("end_to_end_minutes"),
        "environment": {k: env[k] for k in ("python", "cpus", "git")},
    }


def targets(rq: dict, timing: dict, cfg) -> dict:
    """The targets set before the run (``reproduce.target_*``) against what was measured: the best
    system on the official split (every run and ensemble, picked by test accuracy, so optimistic; not
    the ablation runs, ``<variant>@<tag>``, which retrain the standard variant with one thing changed to
    measure that change) and the reproduction's time: one uninterrupted run's when recorded, else the
    summed notebook times."""
    systems = {
        k: {"accuracy": v["official_accuracy"], "macro_f1": v["official_macro_f1"]}
        for k, v in rq["runs"].items()
        if "@" not in k.split("/")[0]
    }
    systems.update(
        {
            k: {m: v["official"][m] for m in ("accuracy", "macro_f1")}
            for k, v in (rq.get("rq2", {}).get("systems", {}) or {}).items()
        }
    )
    best = max(systems, key=lambda k: systems[k]["accuracy"])
    t = cfg.reproduce
    # the time the target is judged on: the uninterrupted run's while none of its jobs ran again after
    # it; else that part's notebook times summed (its jobs changed since); else all notebook times summed
    e2e = timing.get("end_to_end") or {}
    scope = e2e.get("part")
    full = timing.get("full_run") or {}  # reported beside it: a reader's whole rerun (make reproduce)
    if e2e and not e2e.get("jobs_rerun_since"):
        judged, basis = e2e["minutes"], f"the uninterrupted run of the {scope} part" if scope != "all" else "one run"
    elif scope in (timing.get("part_minutes") or {}):
        judged = timing["part_minutes"][scope]
        basis = f"the {scope} part's notebook times summed (jobs of it ran again after its uninterrupted run)"
    else:
        judged, basis = timing["total_minutes"], "all notebook times summed"
    return {
        "accuracy": {
            "target": t.target_accuracy,
            "best": best,
            **systems[best],
            "met": min(systems[best]["accuracy"], systems[best]["macro_f1"]) >= t.target_accuracy,
        },
        "minutes": {
            "target": t.target_minutes,
            "measured": timing["total_minutes"],
            "jobs": len(timing["jobs"]),
            "met": judged <= t.target_minutes,
            "judged_minutes": round(judged, 1),
            "basis": basis,
            # one uninterrupted run when recorded (the headline part's when the parts were run one by
            # one, see `tumorlens.experiments.jobs.PLAN_PARTS`), else the per-job times added up
            "end_to_end": timing.get("end_to_end_minutes"),
            "end_to_end_scope": (timing.get("end_to_end") or {}).get("part"),
            "full_run": full.get("minutes"),
        },
    }


def adopt_published(profile: str) -> dict[str, str]:
    """Write job records (`jobs.JOB_RECORDS`) for the products already in ``results/<profile>/`` that have
    none (collected before records existed), so that a machine without runs/ resumes from them.

    A training run is adopted only when the settings sections its step reads, as its ``run.json``
    recorded them, equal today's (then its record says so); the other steps recorded no settings, so
    their records say that today's are taken for theirs (they were collected at the commit named in
    ``summary.json``). Returns ``{job: what was done}``."""
    res = results_dir(profile)
    summary = read_json(res / "summary.json", schema="summary") if (res / "summary.json").is_file() else {}
    commit = (summary.get("environment") or {}).get("git", {}).get("commit", "unknown")
    timing = (
        read_json(res / "reproduction.json", schema="reproduction") if (res / "reproduction.json").is_file() else {}
    )
    seconds = {j["job"]: j.get("seconds") for j in timing.get("jobs", [])}
    records = dict(published_records(profile))
    done: dict[str, str] = {}
    jobs = plan(profile)
    for rounds in range(3):  # upstream jobs first: a record's inputs name its upstream's stamp
        for job in jobs:
            name = run_name(job.run_dir, profile)
            dest = results_location(job, res)
            if name in records or not dest.is_dir():
                continue
            ups = [run_name(u, profile) for u in upstream_runs(job)]
            if any(u not in records for u in ups if (results_location_of(u, jobs, profile, res) or res).exists()):
                continue  # wait for the upstream's record (next round)
            note = _adoptable(job, dest, profile)
            if note is None:
                done[name] = "not adopted: its recorded settings differ from today's"
                continue
            _write_records(res, profile, records)  # so that `stamp` sees the upstream records written so far
            inputs = portable_inputs(job_inputs(job), profile)
            inputs["notebook"] = None  # not recorded then
            records[name] = {
                "step": job.notebook,
                "inputs": inputs,
                "finished": f"adopted from the results collected at {commit[:12]} ({name})",
                "commit": {"commit": commit, "dirty": None},
                "code": None,
                "seconds": seconds.get(name),
                "adopted": note,
            }
            done[name] = "adopted"
    _write_records(res, profile, records)
    if (res / MANIFEST).is_file():
        write_manifest(res, profile, files=[res / JOB_RECORDS])
    return done


def results_location_of(name: str, jobs, profile: str, res: Path) -> Path | None:
    """The published folder of the planned job named ``name`` (None when it is not planned)."""
    for j in jobs:
        if run_name(j.run_dir, profile) == name:
            return results_location(j, res)
    return None


def _write_records(res: Path, profile: str, records: dict) -> None:
    write_json(res / JOB_RECORDS, {"profile": profile, "jobs": dict(sorted(records.items()))}, schema="jobs")


def _adoptable(job, dest: Path, profile: str) -> str | None:
    """Why a published product may be taken as made with today's settings, or None when it may not."""
    if job.notebook not in ("02_train", "02_vit"):
        return "adopted: collected before job records existed; taken as made with today's settings"
    run = read_json(dest / RUN_INFO, schema="run")
    sections = STEPS[job.notebook].settings
    recorded = settings_fingerprint(Config.from_dict(run["config"]), sections)
    p = job.params
    base = {"seed": p["seed"], **({"model.backbone": "vit", "model.modules": []} if job.notebook == "02_vit" else {})}
    if job.notebook == "02_train":
        base |= {"model.backbone": p["backbone"], "model.modules": p["modules"]}
    now = settings_fingerprint(load_config(p["profile"], overrides={**base, **(p.get("overrides") or {})}), sections)
    for fp in (recorded, now):  # where the dataset lay is no setting of the result (its identity is checked below)
        fp.get("data", {}).pop("root", None)
    scan = dest.parents[2] / "data" / "scan.json" if "variants" in dest.parts else None
    same_data = scan is None or not scan.is_file() or read_json(scan, schema="scan")["dataset"] == run.get("dataset")
    if recorded != now or not same_data:
        return None
    return "adopted: its run.json records today's settings (collected before job records existed)"


def publish_job(job, profile: str) -> Path:
    """Publish one finished job's products into ``results/<profile>/`` at once (its folder, its record in
    `jobs.JOB_RECORDS`, the manifest), so that a study interrupted by the end of a session resumes in the
    next from what was committed. The RQ tables and ``summary.json`` are recomputed by the next `collect`
    (`tumorlens run` ends with one)."""
    res = results_dir(profile)
    dest = results_location(job, res)
    _publish_job(job, job.run_dir, dest)
    make_portable(dest, load_config(profile))
    records = dict(published_records(profile))
    records[run_name(job.run_dir, profile)] = _job_record(job, profile)
    _write_records(res, profile, records)
    if (res / MANIFEST).is_file():
        write_manifest(res, profile)
    return dest


#: A training job's products that say what its model does: a rerun reproduces the published job when these
#: are byte for byte the published ones (every test and validation probability as written).
REPRODUCED_BY = ("predictions.csv", "val_predictions.csv")


def keep_published_stamp(job, profile: str) -> bool:
    """After a training job ran again although its published copy was current (retrained for weights that
    ``models/<profile>/`` does not publish, or ``--force``): when its `REPRODUCED_BY` files equal the published
    ones, its completion record takes the published stamp (``finished``) and says so (``reproduced``), so the
    jobs made from the published run stay current -- the rerun reproduced it. Returns whether it did; a rerun
    that differs keeps its own stamp (what was made from the published run is then out of date)."""
    if job.notebook not in ("02_train", "02_vit") or not (job.run_dir / DONE).is_file():
        return False
    name = run_name(job.run_dir, profile)
    rec = published_records(profile).get(name)
    if rec is None or not rec.get("finished"):
        return False
    if _differences(rec.get("inputs", {}), portable_inputs(job_inputs(job), profile), job):
        return False  # not the published job's inputs: a new result
    src = results_location(job, results_dir(profile))
    same = all(
        (src / f).is_file() and (job.run_dir / f).is_file() and (src / f).read_bytes() == (job.run_dir / f).read_bytes()
        for f in REPRODUCED_BY
    )
    if same:
        done = json.loads((job.run_dir / DONE).read_text())
        done["reproduced"] = (
            f"ran again at {done.get('finished')}; its {' and '.join(REPRODUCED_BY)} equal the published ones, "
            "so it keeps the published stamp"
        )
        done["finished"] = rec["finished"]
        write_json(job.run_dir / DONE, done)
    return same


def restore_job(job, profile: str, *, weights: bool = True) -> Path:
    """Put a published job back into its runs/ folder, so the jobs that read it run without rerunning it:
    its published products (``config.json`` from ``run.json``), its ``model.keras`` rebuilt from
    ``models/<profile>/`` when ``weights`` and that model is published there, and a completion record
    carrying the published record's stamp (so what was made from it stays current). Returns the folder."""
    res = results_dir(profile)
    name = run_name(job.run_dir, profile)
    rec = published_records(profile).get(name)
    if rec is None:
        raise FileNotFoundError(f"{name}: no published record in {paths.relative(res / JOB_RECORDS)}")
    src, dest = results_location(job, res), job.run_dir
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src).as_posix()
        if f.is_file() and not rel.startswith(("seeds/", ".")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / rel)
    if (dest / RUN_INFO).is_file():
        shutil.copy2(dest / RUN_INFO, dest / CONFIG)
    model_name = f"{job.run_dir.parent.name}/{job.run_dir.name}"
    if weights and job.notebook in ("02_train", "02_vit") and model_name in published_weights(profile):
        published.load(model_name, profile).save(dest / MODEL)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(f"Restored from the published results ({paths.relative(src)}).")]
    )
    nbformat.write(nb, dest / "notebook.ipynb")
    write_json(
        dest / DONE,
        {
            "notebook": job.notebook,
            "params": job.params,
            "seconds": rec.get("seconds"),
            "finished": rec.get("finished"),
            "inputs": job_inputs(job),
            "commit": rec.get("commit"),
            "code": rec.get("code"),
            "restored": f"from {paths.relative(src)}",
        },
    )
    return dest


def published_weights(profile: str) -> set[str]:
    """The runs (``<variant>/seed-<n>``) whose weights ``models/<profile>/`` publishes."""
    mf = paths.models_root() / profile / "models.json"
    return set(json.loads(mf.read_text()).get("models", {})) if mf.is_file() else set()
