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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tumorlens import paths
from tumorlens.config import PAPER_MODULES, load_config, settings_fingerprint, variant_name
from tumorlens.models.backbones import get_spec

__all__ = [
    "Job",
    "DONE",
    "PLAN_PARTS",
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
#: it runs after it.
PLAN_PARTS = ("headline", "supplementary")

#: The sections of the settings each notebook reads: a change elsewhere leaves its results current.
SETTINGS_READ: dict[str, tuple[str, ...]] = {
    "01_data": ("data", "audit", "augment"),
    "02_train": ("data", "audit", "augment", "model", "train"),
    "02_vit": ("data", "audit", "augment", "model", "train"),
    "03_explain": ("data", "audit", "model", "segment"),
    "04_ensembles": ("data", "audit"),
    "05_robustness": ("data", "audit"),
}
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
COUNTERFACTUAL_STUDY: dict[str, dict[str, Any]] = {
    "cf": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05},
    "cf-gin": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05, "augment.gin": 0.5},
    "gin": {"augment.gin": 0.5},
    "cf-nofilter": {_CF + "share": 1.0, _CF + "keep": 1.0, _CF + "dilation": 0.05},
    "cf-nocontrol": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.05, _CF + "control": 0.0},
    "cf-dil10": {_CF + "share": 1.0, _CF + "keep": 0.5, _CF + "dilation": 0.10},
    "cf-half": {_CF + "share": 0.5, _CF + "keep": 0.5, _CF + "dilation": 0.05},
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


def job_inputs(job: Job, notebooks: Path | None = None) -> dict:
    """What a job's results depend on, as its completion record stores it: the parameters, the
    notebook's hash, the hash of the settings sections it reads (of the profile and overrides it runs
    with), and the completion stamps of the runs its parameters name."""
    src = (notebooks or notebook_dir()) / f"{job.notebook}.py"
    profile = job.params.get("profile", "smoke")
    cfg = load_config(profile, overrides=job.params.get("overrides") or None)
    sections = SETTINGS_READ.get(job.notebook, tuple(sorted(cfg.to_dict())))
    settings = settings_fingerprint(cfg, sections)
    upstream = {}
    for run in upstream_runs(job):
        done = Path(run) / DONE
        upstream[run] = _sha(done.read_bytes()) if done.is_file() else None
    return {
        "params": json.loads(json.dumps(job.params, default=str)),
        "notebook": _sha(src.read_bytes()) if src.is_file() else None,
        "settings": _sha(json.dumps(settings, sort_keys=True, default=str).encode()),
        "settings_sections": list(sections),
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
        reasons.append(f"settings changed (in {', '.join(now['settings_sections'])})")
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
        native = get_spec(other).native_size
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
        extra.append(_train_job("smoke", smoke_root, other, (), load_config("smoke").seed, part="supplementary"))
    explained = root / f"{bb}+{'+'.join(PAPER_MODULES)}" / f"seed-{first}"
    # the localisation ablation: the standard variant with other head poolings, explained beside it
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
        for pooling in r.poolings
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
    if pooled:
        explain_params["ablation_runs"] = [str(root / bb / f"seed-{first}")] + [str(j.run_dir) for j in pooled]
    extra[:0] = [*pooled, *intensity, Job("03_explain", root / "explain", explain_params, part="supplementary")]
    if r.explain_seeds:
        extra[len(pooled) + len(intensity) + 1 : len(pooled) + len(intensity) + 1] = explain_seed_jobs(
            profile, root, cnn_runs, seeds
        )
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
    ``reproduce.counterfactual_seeds`` at every seed. Supplementary jobs."""
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
            out.append(_train_job(profile, root, bb, modules, s, tag=tag, overrides=overrides, part="supplementary"))
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


#: Where the explain step's seed replicates run (``reproduce.explain_seeds``): ``<runs_root>/explain-seeds/seed-<n>``.
EXPLAIN_SEEDS = "explain-seeds"


def explained_run(root: Path) -> Path | None:
    """The classifier run the finished explain step chose (``<root>/explain/summary.json``), or None
    while it has not run."""
    summary = root / "explain" / "summary.json"
    if not (root / "explain" / DONE).is_file() or not summary.is_file():
        return None
    model = json.loads(summary.read_text()).get("model")
    return paths.resolve(model) if model else None


def explain_seed_jobs(profile: str, root: Path, cnn_runs: Sequence[Path], seeds: Sequence[int]) -> list[Job]:
    """``reproduce.explain_seeds``: the explain step once more for each other seed of the classifier
    recipe the explain step chose (same backbone and modules; its choice stays by validation), in
    ``<root>/explain-seeds/seed-<n>``, without the localisation ablation.

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
