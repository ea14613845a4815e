"""The jobs of a profile and their completion records: what `tumorlens run` executes (`plan`), and
whether a finished job is still current (`stale_reasons`).

A job's completion record (``.done.json`` in its run directory) stores the parameters, the notebook's
hash, the hash of the settings sections the notebook reads (`SETTINGS_READ`), the completion stamps of
the runs it reads (the explain step's candidate models, the ensemble's members) and the commit. A job
whose record disagrees with the present is stale: `tumorlens run` reruns it and says why, and
`tumorlens collect` leaves it out. Changes to the library itself are not tracked (the commit is
recorded for the reader): rerun with ``--force``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tumorlens import models, paths
from tumorlens.config import PAPER_MODULES, load_config, settings_fingerprint, variant_name
from tumorlens.experiments.steps import STEPS, code_fingerprint

__all__ = [
    "Job",
    "DONE",
    "PLAN_PARTS",
    "PAPER_PARTS",
    "SETTINGS_READ",
    "plan",
    "notebook_dir",
    "upstream_runs",
    "job_inputs",
    "stale_reasons",
    "current_runs",
    "EXPLAIN_SEEDS",
    "explained_run",
    "explain_seed_jobs",
    "COUNTERFACTUAL_STUDY",
    "counterfactual_jobs",
    "selected",
]

DONE = ".done.json"

#: The parts of a profile's plan, each runnable and timed on its own (`tumorlens run --part`):
#: ``headline`` is self-contained (the classification results: the data audit, RQ1's standard and
#: all-modules runs over every seed and each module alone, the ensembles chosen among those runs);
#: ``supplementary`` holds the rest (the explain-and-segment step, which explains the best of those
#: runs, warm-up only, the ViT, robustness, the other backbones' evidence) and reads headline runs, so
#: it runs after it. Together they are the paper (`make reproduce`). ``study`` is the lesion study
#: (``reproduce.counterfactual``): a grid of retrained candidates the lesion chapter compares, which no
#: paper number reads; its runs are published like the others (`make reproduce-study` reruns it).
PLAN_PARTS = ("headline", "supplementary", "study")
#: The parts `make reproduce` runs in one invocation (its ``full_run`` time).
PAPER_PARTS = ("headline", "supplementary")

#: The sections of the settings each notebook reads (declared in `tumorlens.experiments.steps`): a change
#: elsewhere leaves its results current.
SETTINGS_READ: dict[str, tuple[str, ...]] = {name: step.settings for name, step in STEPS.items()}
#: The intensity-remapping strengths of the robustness ablation (``reproduce.intensity``), set before
#: any external score was seen: gamma exponents within e^+-0.4 (about 0.67-1.5), a bias field of up to
#: e^+-0.3 at the corners, noise of 2% of full scale.
INTENSITY_ABLATION = {"augment.gamma": 0.4, "augment.bias_field": 0.3, "augment.noise": 0.02}
#: The sequence-shortcut ablation (``reproduce.inversion``): half of the cached augmented views get their
#: intensities inverted inside the head (a T2/FLAIR slice takes a T1-like contrast and the other way
#: round), set before any external score of it was seen.
INVERSION_ABLATION = {"augment.invert": 0.5}
#: The view-shortcut ablation (``reproduce.view_balance``): training weights that even out the estimated
#: slice planes within each class, square-root tempered (0.5: a no-tumour coronal slice weighs about 5
#: axial ones instead of 15 at full balance, which would lean on a few dozen images), set before any
#: external score of it was seen.
VIEW_ABLATION = {"train.view_balance": 0.5}
#: The lesion study (``reproduce.counterfactual``): the published single model's recipe retrained with
#: lesion-removed no-tumour images (`tumorlens.experiments.counterfactual`) and/or random-convolution
#: contrast remapping, each tag one recipe. ``cf`` is the study's main recipe, set before any BRISC score
#: of it was seen: the 50% most confident published weak masks (the share whose 5%-dilated mask covers
#: >= 90% of the expert lesion on the tuning half of the expert masks: 95%; `mask_filter_curve`), every
#: one of them removed (Navier-Stokes; the test uses Telea and the ring fill), controls on half of the
#: no-tumour images and the balancing share of the tumour images. The others change one thing.
_CF = "train.counterfactual."
_CF_GIN = {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05, "augment.gin": 0.5}
COUNTERFACTUAL_STUDY: dict[str, dict[str, Any]] = {
    "cf": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05},
    "cf-gin": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05, "augment.gin": 0.5},
    "gin": {"augment.gin": 0.5},
    "cf-nofilter": {_CF + "share": 1.0, _CF + "keep": 1.0, _CF + "dilation": 0.05},
    "cf-nocontrol": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05, _CF + "control": 0.0},
    "cf-dil10": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.10},
    "cf-half": {_CF + "share": 0.5, _CF + "keep": 0.5, _CF + "dilation": 0.05},
    # added after the first results (cf alone lost 4 points of official accuracy, GIN beside it kept them):
    # GIN with the validation split's counterfactuals choosing the epochs, and with lesion transplants
    "cf-gin-val": {**_CF_GIN, _CF + "validation": True},
    "cf-gin-transplant": {**_CF_GIN, _CF + "validation": True, _CF + "transplant": 0.5},
}
#: Parameters that name other runs: a job is stale when one of them completed again after it.
_UPSTREAM_PARAMS = ("candidate_runs", "member_runs", "model_run", "cnn_run", "ablation_runs")


@dataclass(frozen=True)
class Job:
    notebook: str  # stem of notebooks/<stem>.py
    run_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    page: str | None = None  # name of the book page this run's notebook becomes, if any
    title: str | None = None  # that page's title (replaces the notebook's first heading)
    part: str = "headline"  # which of `PLAN_PARTS` it belongs to
    evidence: bool = False  # another backbone's smoke run in a profile's plan (published under smoke_backbones/)

    @property
    def output(self) -> Path:
        return self.run_dir / "notebook.ipynb"

    @property
    def done(self) -> bool:
        return (self.run_dir / DONE).is_file() and self.output.is_file()


def notebook_dir() -> Path:
    return paths.repo_root() / "notebooks"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def upstream_runs(job: Job) -> list[str]:
    """The run directories ``job``'s parameters name (the runs it reads), in parameter order."""
    runs = []
    for key in _UPSTREAM_PARAMS:
        value = job.params.get(key)
        runs += [str(r) for r in ([value] if isinstance(value, str) else value or []) if r]
    return runs


def stamp(run: str | Path, profile: str | None = None) -> str | None:
    """The completion stamp of a run (its ``finished`` record: a new one each time it completes): from
    its ``.done.json`` in ``runs/``, else from the published job record of ``profile``; None when it
    has completed nowhere."""
    done = Path(run) / DONE
    if done.is_file():
        try:
            return json.loads(done.read_text()).get("finished") or _sha(done.read_bytes())
        except (OSError, ValueError):
            return _sha(done.read_bytes())
    if profile is None:
        return None
    rec = published_records(profile).get(run_name(run, profile))
    return rec.get("finished") if rec else None


def job_inputs(job: Job, notebooks: Path | None = None) -> dict:
    """What a job's results depend on, as its completion record stores it: the parameters, the
    notebook's hash, the hash of the settings sections it reads (of the profile and overrides it runs
    with), and the completion stamps of the runs its parameters name."""
    src = (notebooks or notebook_dir()) / f"{job.notebook}.py"
    profile = job.params.get("profile", "smoke")
    cfg = load_config(profile, overrides=job.params.get("overrides") or None)
    sections = SETTINGS_READ.get(job.notebook, tuple(sorted(cfg.to_dict())))
    settings = settings_fingerprint(cfg, sections)
    upstream = {run: stamp(run, profile) for run in upstream_runs(job)}
    return {
        "params": json.loads(json.dumps(job.params, default=str)),
        "notebook": _sha(src.read_bytes()) if src.is_file() else None,
        "settings": _sha(json.dumps(settings, sort_keys=True, default=str).encode()),
        "settings_sections": list(sections),
        # each section's own hash: a stale job's reason names the sections that changed
        "settings_by_section": {
            k: _sha(json.dumps(v, sort_keys=True, default=str).encode()) for k, v in settings.items()
        },
        "upstream": upstream,
    }


def stale_reasons(job: Job, notebooks: Path | None = None, now: dict | None = None) -> list[str]:
    """Why ``job`` must run: ``["not run yet"]``, the inputs that changed since it completed, or
    ``[]`` when its results are complete and current. ``now``: `job_inputs` when the caller has them."""
    if not job.done:
        return ["not run yet"]
    try:
        record = json.loads((job.run_dir / DONE).read_text())
    except (OSError, ValueError):
        return ["its completion record is unreadable"]
    before = record.get("inputs")
    if not isinstance(before, dict):
        return ["completed before inputs were recorded"]
    now = now or job_inputs(job, notebooks)
    reasons = []
    if before.get("params") != now["params"]:
        changed = sorted(
            k
            for k in set(before.get("params", {})) | set(now["params"])
            if before.get("params", {}).get(k) != now["params"].get(k)
        )
        reasons.append(f"parameters changed ({', '.join(changed)})")
    if before.get("notebook") != now["notebook"]:
        reasons.append(f"notebooks/{job.notebook}.py changed")
    if before.get("settings") != now["settings"]:
        reasons.append(_settings_changed(before, now))
    for run, stamp in now["upstream"].items():
        if before.get("upstream", {}).get(run) != stamp:
            reasons.append(f"{paths.relative(run)} was run again")
    return reasons


def _train_job(
    profile: str,
    root: Path,
    backbone: str,
    modules: Sequence[str],
    seed: int,
    *,
    page: str | None = None,
    tag: str = "",
    overrides: dict | None = None,
    part: str = "headline",
) -> Job:

    name = variant_name(backbone, modules) + (f"@{tag}" if tag else "")
    run_dir = root / name / f"seed-{seed}"
    return Job(
        "02_train",
        run_dir,
        {
            "profile": profile,
            "backbone": backbone,
            "modules": list(modules),
            "seed": seed,
            "run_dir": str(run_dir),
            "overrides": overrides or {},
        },
        page=page,
        title=f"Training: {name}" + ("" if page else f" (seed {seed})"),
        part=part,
    )


def plan(profile: str, part: str | None = None) -> list[Job]:
    """The jobs of a profile, in order (later notebooks read what earlier ones saved); only those of
    ``part`` (one of `PLAN_PARTS`) when given.

    Headline: data -> standard and all-modules variants over ``reproduce.seeds`` (RQ1) -> each module
    alone -> ensembles (RQ2) chosen among those runs. Supplementary: the standard variant with each head
    pooling of ``reproduce.poolings`` -> explain-and-segment (RQ3) of the best of the headline runs
    (and the localisation ablation: the pooled runs against the standard one) -> all modules warm-up
    only (RQ4) -> the ViT (RQ5) -> the other backbones on the smoke profile (labelled evidence) ->
    robustness of the all-modules run.
    """
    if part is not None and part not in PLAN_PARTS:
        raise ValueError(f"part must be one of {', '.join(PLAN_PARTS)}; received part={part!r}")
    cfg = load_config(profile)
    r = cfg.reproduce
    root = cfg.runs_root
    bb = cfg.model.backbone
    seeds = list(r.seeds) or [cfg.seed]
    first = seeds[0]
    jobs = [Job("01_data", root / "data", {"profile": profile, "run_dir": str(root / "data"), "seed": first})]
    for seed in seeds:
        jobs.append(_train_job(profile, root, bb, (), seed))
        jobs.append(_train_job(profile, root, bb, PAPER_MODULES, seed))
    if r.ablations:
        for mod in PAPER_MODULES:
            jobs.append(_train_job(profile, root, bb, (mod,), first))
    for other in r.backbones:  # more backbones, each at its native input size (Lite1: 240 px, Lite2: 260 px)
        native = models.get_spec(other).native_size
        sized = {"data.image_size": native} if native and native != cfg.data.image_size else {}
        for seed in seeds:
            jobs.append(_train_job(profile, root, other, (), seed, overrides=sized))
    cnn_runs = [j.run_dir for j in jobs[1:]]  # every CNN run: the explain step's candidates, the ensemble's members
    extra = []
    if r.warmup_only:
        extra.append(
            _train_job(
                profile,
                root,
                bb,
                PAPER_MODULES,
                first,
                tag="warmup-only",
                overrides={"train.finetune_epochs": 0},
                part="supplementary",
            )
        )
    if r.vit:
        vit_dir = root / "vit" / f"seed-{first}"
        from_scratch = {
            "model.weights": "none",
            "train.warmup_epochs": 0,
            "train.finetune_layers": 100_000,
            "train.finetune_epochs": r.vit_epochs,
            "train.finetune_lr": r.vit_lr,
            "train.prefix_cache": False,
        }
        extra.append(
            Job(
                "02_vit",
                vit_dir,
                {
                    "profile": profile,
                    "seed": first,
                    "run_dir": str(vit_dir),
                    "cnn_run": str(root / bb / f"seed-{first}"),
                    "overrides": from_scratch,
                },
                title=f"Training: the minimal ViT from scratch (seed {first})",
                part="supplementary",
            )
        )
    smoke_root = load_config("smoke").runs_root
    for other in r.other_backbones:
        job = _train_job("smoke", smoke_root, other, (), load_config("smoke").seed, part="supplementary")
        extra.append(dataclasses.replace(job, evidence=True))
    explained = root / f"{bb}+{'+'.join(PAPER_MODULES)}" / f"seed-{first}"
    # the localisation ablation: the standard variant with other head poolings, scored beside the standard head
    # trained again with them (``pool-gap``, the same recipe as the headline run of that seed): the three heads
    # are trained together, so the ablation never retrains a headline run (whose weights are unpublished; a
    # retrain on another machine is another model, and RQ1 and the ensembles would move with it)
    pooled = [
        _train_job(
            profile,
            root,
            bb,
            (),
            first,
            tag=f"pool-{pooling}",
            overrides={"model.pooling": pooling},
            part="supplementary",
        )
        for pooling in ([REFERENCE_POOLING, *r.poolings] if r.poolings else [])
    ]
    # the robustness ablation: the standard variant trained on remapped intensities
    intensity = (
        [
            _train_job(
                profile, root, bb, (), first, tag="intensity", overrides=dict(INTENSITY_ABLATION), part="supplementary"
            )
        ]
        if r.intensity
        else []
    )
    # the shortcut ablations, every seed: the standard variant trained with contrast inversion (the
    # sequence shortcut) and with plane-balanced weights (the view shortcut)
    shortcut = [
        _train_job(profile, root, bb, (), seed, tag=tag, overrides=dict(overrides), part="supplementary")
        for tag, on, overrides in (
            ("invert", r.inversion, INVERSION_ABLATION),
            ("views", r.view_balance, VIEW_ABLATION),
        )
        if on
        for seed in seeds
    ]
    explain_params = {
        "profile": profile,
        "model_run": "",
        "candidate_runs": [str(p) for p in cnn_runs],
        "run_dir": str(root / "explain"),
    }
    localisation = (
        [
            Job(
                "03_localisation",
                root / LOCALISATION,
                {
                    "profile": profile,
                    "ablation_runs": [str(j.run_dir) for j in pooled],
                    "run_dir": str(root / LOCALISATION),
                },
                title="Localisation: the head poolings",
                part="supplementary",
            )
        ]
        if pooled
        else []
    )
    extra[:0] = [
        *pooled,
        *intensity,
        *localisation,
        Job("03_explain", root / "explain", explain_params, part="supplementary"),
        *(explain_seed_jobs(profile, root, cnn_runs, seeds) if r.explain_seeds else []),
    ]
    extra += shortcut
    extra += counterfactual_jobs(profile, cfg, root, seeds)
    jobs.append(
        Job(
            "04_ensembles",
            root / "ensembles",
            {
                "profile": profile,
                "member_runs": [str(p) for p in cnn_runs],
                "k": r.ensemble_k,
                "run_dir": str(root / "ensembles"),
            },
        )
    )
    extra.append(
        Job(
            "05_robustness",
            root / "robustness",
            {"profile": profile, "model_run": str(explained), "run_dir": str(root / "robustness")},
            part="supplementary",
        )
    )
    return [j for j in jobs + extra if part is None or j.part == part]


def counterfactual_jobs(profile: str, cfg, root: Path, seeds: Sequence[int]) -> list[Job]:
    """``reproduce.counterfactual``: the published single model's recipe (backbone, modules, input size and
    seed of ``models/<profile>/models.json``; the profile's own backbone at its first seed when nothing is
    published) retrained with each study recipe (`COUNTERFACTUAL_STUDY`), tagged ``@<recipe>``; those in
    ``reproduce.counterfactual_seeds`` at every seed. Jobs of the ``study`` part."""
    r = cfg.reproduce
    unknown = sorted(set(r.counterfactual) - set(COUNTERFACTUAL_STUDY)) + sorted(
        set(r.counterfactual_seeds) - set(r.counterfactual)
    )
    if unknown:
        raise ValueError(
            f"reproduce.counterfactual(_seeds): unknown or unplanned recipe(s) {unknown}; the study's recipes: "
            f"{', '.join(COUNTERFACTUAL_STUDY)} (counterfactual_seeds must be planned in counterfactual)"
        )
    if not r.counterfactual:
        return []
    bb, modules, size, seed = cfg.model.backbone, (), cfg.data.image_size, seeds[0]
    mf_file = paths.models_root() / profile / "models.json"
    if mf_file.is_file():
        mf = json.loads(mf_file.read_text())
        recipe = mf["models"][mf["single"]]["recipe"]
        bb, modules, size = recipe["backbone"], tuple(recipe["modules"]), int(recipe["image_size"])
        seed = int(mf["single"].rsplit("seed-", 1)[1])
    sized = {"data.image_size": size} if size != cfg.data.image_size else {}
    out = []
    for tag in r.counterfactual:
        for s in [seed] + ([x for x in seeds if x != seed] if tag in r.counterfactual_seeds else []):
            overrides = {**sized, **COUNTERFACTUAL_STUDY[tag]}
            out.append(_train_job(profile, root, bb, modules, s, tag=tag, overrides=overrides, part="study"))
    return out


def selected(job: Job, only: Sequence[str] | None, root: Path | None = None) -> bool:
    """Whether ``job`` is one of ``only``: notebook stems (``02_train``) or job names, the run folder under
    the runs root (``efficientnet_lite1@cf/seed-43``); everything when ``only`` is empty."""
    if not only:
        return True
    name = job.run_dir.as_posix()
    if root is not None:
        try:
            name = job.run_dir.relative_to(root).as_posix()
        except ValueError:
            pass
    return job.notebook in only or name in only or any(name.endswith("/" + o) for o in only)


#: The localisation ablation's reference head (`tumorlens.config.POOLINGS`), trained beside the pooled ones.
REFERENCE_POOLING = "gap"

#: Where the localisation ablation runs (``reproduce.poolings``): ``<runs_root>/localisation``.
LOCALISATION = "localisation"

#: Where the explain step's seed replicates run (``reproduce.explain_seeds``): ``<runs_root>/explain-seeds/seed-<n>``.
EXPLAIN_SEEDS = "explain-seeds"


def explained_run(root: Path) -> Path | None:
    """The classifier run the finished explain step chose: from ``<root>/explain/summary.json``, or, when
    runs/ does not hold the step, from its published copy (``results/<profile>/segmentation/summary.json``
    with a job record); None while it has run nowhere."""
    summary = root / "explain" / "summary.json"
    if not ((root / "explain" / DONE).is_file() and summary.is_file()):
        profile = root.name
        summary = paths.results_root() / profile / "segmentation" / "summary.json"
        if not summary.is_file() or run_name(root / "explain", profile) not in published_records(profile):
            return None
        model = json.loads(summary.read_text()).get("model")
        return (root / Path(model).parent.name / Path(model).name) if model else None
    model = json.loads(summary.read_text()).get("model")
    return paths.resolve(model) if model else None


def explain_seed_jobs(profile: str, root: Path, cnn_runs: Sequence[Path], seeds: Sequence[int]) -> list[Job]:
    """``reproduce.explain_seeds``: the explain step once more for each other seed of the classifier
    recipe the explain step chose (same backbone and modules; its choice stays by validation), in
    ``<root>/explain-seeds/seed-<n>``.

    These jobs follow a result: they are planned once the explain step has run (`tumorlens run` plans
    again after its jobs and runs the new ones), and they are stale when its choice moves to another
    recipe (their ``model_run`` parameter changes)."""
    chosen = explained_run(root)
    if chosen is None:
        return []
    planned = {Path(p).resolve() for p in cnn_runs}
    jobs = []
    for seed in seeds:
        run = chosen.parent / f"seed-{seed}"
        if run.resolve() == chosen.resolve() or run.resolve() not in planned:
            continue
        out = root / EXPLAIN_SEEDS / f"seed-{seed}"
        params = {"profile": profile, "model_run": str(root / chosen.parent.name / run.name), "run_dir": str(out)}
        jobs.append(
            Job("03_explain", out, params, title=f"Explain: {chosen.parent.name} (seed {seed})", part="supplementary")
        )
    return jobs


def current_runs(profile: str) -> tuple[set[Path], dict[Path, list[str]]]:
    """The run directories of ``profile``'s plan whose jobs are complete and current, and the others
    with the reasons they are not (absent runs are left out of both)."""
    ok, stale = set(), {}
    for job in plan(profile):
        if not job.run_dir.exists():
            continue
        why = stale_reasons(job)
        if why:
            stale[job.run_dir.resolve()] = why
        else:
            ok.add(job.run_dir.resolve())
    return ok, stale


# -- published job records: a product in results/<profile>/ knows what made it ------------------------------

#: ``results/<profile>/jobs.json``: for each job whose products `collect` published, the inputs it ran
#: with (portable), its completion stamp, commit, code fingerprint and seconds.
JOB_RECORDS = "jobs.json"
#: A job's states in ``tumorlens run --status``: complete and current in runs/, current as published in
#: results/<profile>/ (runs/ does not hold it), or to run.
STATES = ("current", "published", "to run")


def _base(profile: str) -> Path:
    return load_config(profile).runs_root.parent


def run_name(run: str | Path, profile: str) -> str:
    """A run folder as the records name it: relative to the runs root's parent (``cpu/efficientnet_lite1/seed-43``,
    ``smoke/mobilenetv2/seed-42``); absolute when it lies elsewhere."""
    p = Path(run)
    try:
        return p.resolve().relative_to(_base(profile).resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def portable_inputs(inputs: dict, profile: str) -> dict:
    """`job_inputs` with every run folder written as `run_name` (parameters and upstream keys), so a record
    compares across machines and runs roots."""
    base = str(_base(profile).resolve()) + "/"

    def fix(v):
        if isinstance(v, str):
            return v[len(base) :] if v.startswith(base) else v
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return {**inputs, "params": fix(inputs["params"]), "upstream": {fix(k): v for k, v in inputs["upstream"].items()}}


def results_location(job: Job, res: Path) -> Path:
    """Where `collect` publishes ``job``'s products under ``res`` (``results/<profile>``)."""
    name = job.run_dir.name
    if job.notebook == "01_data":
        return res / "data"
    if job.notebook in ("02_train", "02_vit"):
        if job.evidence:  # the other backbones' smoke evidence
            return res / "smoke_backbones" / job.run_dir.parent.name / name
        return res / "variants" / job.run_dir.parent.name / name
    if job.notebook == "03_explain":
        return res / "segmentation" / ("seeds/" + name if job.run_dir.parent.name == EXPLAIN_SEEDS else "")
    if job.notebook == "03_localisation":
        return res / STEPS["03_localisation"].results
    return res / job.run_dir.name  # ensembles, robustness


_RECORDS_CACHE: dict[Path, tuple[int, dict]] = {}


def published_records(profile: str) -> dict[str, dict]:
    """``{run name: record}`` of ``results/<profile>/jobs.json`` (empty when there is none)."""
    f = paths.results_root() / profile / JOB_RECORDS
    if not f.is_file():
        return {}
    mtime = f.stat().st_mtime_ns
    hit = _RECORDS_CACHE.get(f)
    if hit and hit[0] == mtime:
        return hit[1]
    recs = json.loads(f.read_text()).get("jobs", {})
    _RECORDS_CACHE[f] = (mtime, recs)
    return recs


def _settings_changed(before: dict, now: dict) -> str:
    """``settings changed (in <sections>)``: the sections whose own hash changed (a record written before
    sections were hashed one by one names every section the job reads)."""
    was, is_ = before.get("settings_by_section") or {}, now.get("settings_by_section") or {}
    changed = [k for k in now["settings_sections"] if was and was.get(k) != is_.get(k)]
    return f"settings changed (in {', '.join(changed or now['settings_sections'])})"


def _differences(before: dict, now: dict, job: Job) -> list[str]:
    out = []
    if before.get("params") != now["params"]:
        keys = sorted(
            k
            for k in set(before.get("params", {})) | set(now["params"])
            if before["params"].get(k) != now["params"].get(k)
        )
        out.append(f"parameters changed ({', '.join(keys)})")
    if before.get("settings") != now["settings"]:
        out.append(_settings_changed(before, now))
    for run, st in now["upstream"].items():
        if before.get("upstream", {}).get(run) != st:
            out.append(f"{run} was run again" if st else f"{run} has not run")
    return out


def job_state(job: Job, notebooks: Path | None = None, results_profile: str | None = None) -> tuple[str, list[str]]:
    """``(state, why)`` with state one of `STATES`: ``current`` (complete and current in runs/),
    ``published`` (runs/ does not hold it current, but ``results/<profile>/jobs.json`` records it made with
    the parameters, settings and upstream runs it would use now -- an earlier notebook or library code is
    noted in ``why`` but does not make it stale: rerun with ``--force``), or ``to run`` (with why)."""
    why = stale_reasons(job, notebooks)
    if not why:
        return "current", []
    profile = results_profile or job.params.get("profile", "smoke")
    name = run_name(job.run_dir, profile)
    rec = published_records(profile).get(name)
    if rec is None:
        return "to run", why
    now = portable_inputs(job_inputs(job, notebooks), profile)
    diff = _differences(rec.get("inputs", {}), now, job)
    if diff:
        return "to run", [f"published copy out of date: {d}" for d in diff]
    notes = []
    if rec.get("inputs", {}).get("notebook") not in (None, now["notebook"]):
        notes.append(f"made with an earlier notebooks/{job.notebook}.py")
    if job.notebook in STEPS and rec.get("code") not in (None, code_fingerprint(job.notebook)):
        notes.append(f"made with other library code ({', '.join(STEPS[job.notebook].code)})")
    if rec.get("adopted"):
        notes.append(rec["adopted"])
    return "published", notes
