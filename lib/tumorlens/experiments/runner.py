"""Execute the paper's notebooks with papermill, one output folder per run.

A *job* (`tumorlens.experiments.jobs`) is one notebook with one set of parameters, executed into
its own run directory (``runs/<profile>/<...>/notebook.ipynb``). A job whose run directory holds a
completed, current notebook is skipped, so an interrupted `run_profile` resumes where it stopped; a
job whose inputs changed since it completed (parameters, notebook, the settings it reads, the runs
it reads) is rerun and the runner says why (`stale_reasons`). A failing notebook stops the run
with `NotebookFailed`, whose message names the notebook and the failing cell.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tumorlens import paths
from tumorlens.config import PAPER_MODULES, load_config
from tumorlens.errors import NotebookFailed
from tumorlens.experiments.collect import (
    collect,
    keep_published_stamp,
    publish_job,
    published_weights,
    restore_job,
    results_dir,
)
from tumorlens.experiments.grid import execute, run_jobs
from tumorlens.experiments.jobs import (
    DONE,
    PLAN_PARTS,
    SETTINGS_READ,
    Job,
    job_inputs,
    job_state,
    notebook_dir,
    plan,
    results_location,
    run_name,
    selected,
    stale_reasons,
    upstream_runs,
)
from tumorlens.records import FULL_RUN, MODEL, best_by_validation, end_to_end_file, published_run
from tumorlens.utils.environment import environment
from tumorlens.utils.files import write_json

__all__ = [
    "Job",
    "DONE",
    "PLAN_PARTS",
    "NotebookFailed",
    "plan",
    "book_pages",
    "execute",
    "run_profile",
    "record_end_to_end",
    "record_full_run",
    "notebook_dir",
    "job_inputs",
    "stale_reasons",
    "SETTINGS_READ",
]


def book_pages(profile: str, results: Path, out: Path) -> list[Job]:
    """The book's pages: the section notebooks in report mode, reading ``results`` (from `collect`)."""

    cfg = load_config(profile)
    bb, first = cfg.model.backbone, (list(cfg.reproduce.seeds) or [cfg.seed])[0]
    allm = "+".join([bb, *PAPER_MODULES])

    def page(name: str, notebook: str, params: dict, title: str | None = None) -> Job:
        return Job(notebook, out / ".jobs" / name, {"profile": profile, **params}, page=name, title=title)

    return [
        page("01_data", "01_data", {"mode": "report", "run_dir": str(results / "data")}),
        page(
            "02_train_standard",
            "02_train",
            {"mode": "report", "run_dir": str(published_run(results, bb, first))},
            f"Training: {bb} (standard)",
        ),
        page(
            "02_train_all_modules",
            "02_train",
            {"mode": "report", "run_dir": str(published_run(results, allm, first))},
            f"Training: {allm}",
        ),
        page(
            "02_vit",
            "02_vit",
            {
                "mode": "report",
                "seed": first,
                "run_dir": str(published_run(results, "vit", first)),
                "cnn_run": str(published_run(results, bb, first)),
            },
        ),
        page("08_interpretability", "08_interpretability", {"results": str(results)}),  # reads segmentation/
        page("04_ensembles", "04_ensembles", {"mode": "report", "run_dir": str(results / "ensembles")}),
        page(
            "05_robustness",
            "05_robustness",
            {
                "mode": "report",
                "run_dir": str(results / "robustness"),
                "model_run": str(published_run(results, allm, first)),
                "bench": str(results / "bench.json"),
            },
        ),
        page("06_results", "06_results", {"results": str(results)}),
        page("07_external", "07_external", {"results": str(results)}),
    ]


def kernel_threads(train) -> None:
    """Size the thread pools of the kernels this process starts (``train.deterministic``/``threads``,
    see `tumorlens.utils.determinism`): TensorFlow reads these variables when its runtime starts."""
    if train.deterministic:
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if train.threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(train.threads)


def run_profile(
    profile: str,
    *,
    only: Sequence[str] | None = None,
    part: str | Sequence[str] | None = None,
    force: bool = False,
    show_progress: bool = True,
    collect_results: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    publish: bool | None = None,
) -> list[tuple[Job, str]]:
    """Execute every job of ``profile`` (of its ``part``, one of `PLAN_PARTS`, when given; or those whose
    notebook is in ``only``), skipping complete ones, then gather the results into ``results/<profile>/``
    (`tumorlens.results.collect`). One invocation that ran every job of the profile (or of the part)
    records its wall time (`record_end_to_end`).

    ``workers``/``scheduler``: run the jobs on Dask (`tumorlens.experiments.grid`), side by side where
    they do not depend on each other. A part whose jobs read runs of another part that are not
    complete and current is refused before anything runs, naming them.

    Resuming from what is published (`resume`): a job whose published copy in ``results/<profile>/`` is
    current is not rerun (status ``published``), and the published jobs that a job to run reads are put
    back into runs/ first (`tumorlens.experiments.collect.restore_job`: the published classifier's weights
    from ``models/<profile>/``). ``publish`` (default: ``collect_results``): each job that finishes is
    published at once (`tumorlens.experiments.collect.publish_job`), so an interrupted study resumes from a
    commit.

    Several ``part`` names run those parts one after the other in this one invocation, each timed on its
    own; when every job of each ran, the whole is recorded too (`record_full_run`: `make reproduce`'s
    ``full_run``)."""
    if part is not None and not isinstance(part, str):
        parts = list(dict.fromkeys(part))
        unknown = [p for p in parts if p not in PLAN_PARTS]
        if unknown or not parts:
            raise ValueError(f"part must be one or more of {', '.join(PLAN_PARTS)}; received part={part!r}")
        if len(parts) > 1:
            t0, started = time.perf_counter(), datetime.now(timezone.utc)
            done, complete = [], True
            for p in parts:
                ran = run_profile(
                    profile,
                    only=only,
                    part=p,
                    force=force,
                    show_progress=show_progress,
                    collect_results=False,
                    workers=workers,
                    scheduler=scheduler,
                    publish=collect_results if publish is None else publish,
                )
                complete = complete and bool(ran) and all(status.startswith("ran") for _, status in ran)
                done += ran
            if not only and complete:
                record_full_run(load_config(profile), parts, done, time.perf_counter() - t0, started)
            if collect_results and not only:
                collect(profile)
            return done
        part = parts[0]
    publish = collect_results if publish is None else publish
    cfg = load_config(profile)
    jobs = [j for j in plan(profile, part) if selected(j, only, cfg.runs_root)]
    if part is not None:
        outside = {Path(r).resolve() for j in jobs for r in upstream_runs(j)} - {j.run_dir.resolve() for j in jobs}
        missing = sorted(
            paths.relative(job.run_dir)
            for job in plan(profile)
            if job.part != part and job.run_dir.resolve() in outside and job_state(job)[0] == "to run"
        )
        if missing:
            raise ValueError(
                f"the {part} part of profile {profile!r} reads runs that are not complete and current: "
                f"{', '.join(missing)}; run `tumorlens run --profile {profile} --part "
                f"{next(p for p in PLAN_PARTS if p != part)}` first"
            )
    kernel_threads(cfg.train)
    t0, started = time.perf_counter(), datetime.now(timezone.utc)

    def after(job: Job) -> None:  # each finished job's products go where a commit can keep them
        if keep_published_stamp(job, profile):  # a retrain for weights that reproduced the published run
            print(f"{run_name(job.run_dir, profile)} reproduced its published predictions: kept their stamp")
        if publish:
            publish_job(job, profile)

    def batch(todo: list[Job]) -> list[tuple[Job, str]]:
        runnable, kept = resume(profile, todo, force=force)
        ran = run_jobs(
            runnable, force=force, workers=workers, scheduler=scheduler, show_progress=show_progress, after=after
        )
        return ran + [(j, "published") for j in kept]

    done = batch(jobs)
    while True:  # jobs that follow a result (the explain step's seed replicates) join the plan once it exists
        seen = {j.run_dir.resolve() for j in jobs}
        more = [j for j in plan(profile, part) if selected(j, only, cfg.runs_root) and j.run_dir.resolve() not in seen]
        if not more:
            break
        jobs += more
        done += batch(more)
    if not only and done and all(status.startswith("ran") for _, status in done):
        record_end_to_end(cfg, done, time.perf_counter() - t0, started, workers=workers, scheduler=scheduler, part=part)
    if collect_results and not only:
        collect(profile)
    return done


def _needs_weights(job: Job, profile: str) -> set[Path]:
    """The upstream runs whose trained weights ``job`` loads (all it names, but for the explain step only the
    candidate it will choose by validation -- computed from the runs' or the published validation predictions;
    the localisation ablation, a step of its own, loads all of its runs)."""
    ups = [Path(u) for u in upstream_runs(job)]
    if job.notebook != "03_explain" or not job.params.get("candidate_runs"):
        return {u.resolve() for u in ups}
    res = results_dir(profile)
    by_dir = {j.run_dir.resolve(): j for j in plan(profile)}
    where = []
    for c in job.params["candidate_runs"]:
        cj = by_dir.get(Path(c).resolve())
        here = Path(c) if (Path(c) / "val_predictions.csv").is_file() else (results_location(cj, res) if cj else None)
        if here is not None and (here / "val_predictions.csv").is_file():
            where.append((Path(c), here))
    if not where:
        return {u.resolve() for u in ups}
    best = best_by_validation([h for _, h in where])
    chosen = next(c for c, h in where if paths.relative(h) == best["run_dir"])
    return {chosen.resolve()}


def resume(profile: str, jobs: Sequence[Job], *, force: bool = False) -> tuple[list[Job], list[Job]]:
    """``(to execute, kept as published)``: the jobs whose published copy is current are kept (unless
    ``force``); the published jobs that a job to execute reads are restored into runs/ (with their weights
    when the job loads them and ``models/<profile>/`` publishes them); a published job whose weights a job
    to execute needs but that are not published is executed again (retrained), before it."""
    everything = plan(profile)
    state = {j.run_dir.resolve(): job_state(j, results_profile=profile) for j in everything}
    by_dir = {j.run_dir.resolve(): j for j in everything}
    todo = [j for j in jobs if force or state[j.run_dir.resolve()][0] != "published"]
    weights = published_weights(profile)
    extra: list[Job] = []
    restore: dict[Path, tuple[Job, bool]] = {}
    # first every upstream run whose weights a job to execute loads but neither runs/ nor models/ holds
    # (retrained before it), then the other published upstream runs restored -- in this order, so a run that
    # one job needs retrained is not restored without weights for another
    for job in [j for j in todo if state[j.run_dir.resolve()][0] == "to run" or force]:
        need = _needs_weights(job, profile)
        for u in upstream_runs(job):
            uj = by_dir.get(Path(u).resolve())
            if uj is None:
                continue
            d = uj.run_dir.resolve()
            named = f"{uj.run_dir.parent.name}/{uj.run_dir.name}"
            loads = d in need and uj.notebook in ("02_train", "02_vit") and named not in weights
            restored = uj.done and not (uj.run_dir / MODEL).is_file() and state[d][0] != "to run"
            if loads and ((state[d][0] == "published" and not uj.done) or restored):
                if uj not in extra:
                    print(
                        f"rerunning {run_name(uj.run_dir, profile)}: {job.notebook} ({run_name(job.run_dir, profile)}) "
                        "loads its weights, which models/ does not publish",
                        file=sys.stderr,
                    )
                    extra.append(uj)
                    if uj.done:  # restored from the published products, without weights: run it again
                        (uj.run_dir / DONE).unlink()
                continue
            if state[d][0] == "published" and not uj.done:
                was = restore.get(d, (uj, False))[1]
                restore[d] = (uj, was or d in need)
    for d, (uj, with_weights) in restore.items():
        if uj not in extra:
            restore_job(uj, profile, weights=with_weights)
    order = {j.run_dir.resolve(): i for i, j in enumerate(everything)}
    runnable = sorted({j.run_dir.resolve(): j for j in todo + extra}.values(), key=lambda j: order[j.run_dir.resolve()])
    kept = [j for j in jobs if j not in runnable]
    return runnable, kept


def record_full_run(
    cfg, parts: Sequence[str], done: Sequence[tuple[Job, str]], seconds: float, started: datetime
) -> Path:
    """Write ``<runs_root>/full_run.json``: one invocation (`make reproduce`) ran every job of each of
    ``parts`` in turn, in ``seconds`` of wall clock -- the cost of a reader's full rerun from an empty
    runs/. `collect` copies it into ``reproduction.json`` (``full_run``)."""
    record = {"profile": cfg.profile, "parts": list(parts)} | _timed_record(done, seconds, started)
    out = cfg.runs_root / FULL_RUN
    write_json(out, record, schema="full_run")
    return out


def _timed_record(done: Sequence[tuple[Job, str]], seconds: float, started: datetime) -> dict:
    """What every record of an uninterrupted run holds: its wall time, start, jobs, machine and commit."""
    env = environment()
    return {
        "minutes": round(seconds / 60, 1),
        "seconds": round(seconds, 1),
        "started": started.isoformat(timespec="seconds"),
        "jobs": len(done),
        "cpu_model": env["cpu_model"],
        "cpu_flags": env["cpu_flags"],
        "cpus": env["cpus"],
        "commit": env["git"],
    }


def record_end_to_end(
    cfg,
    done: Sequence[tuple[Job, str]],
    seconds: float,
    started: datetime,
    *,
    workers=None,
    scheduler=None,
    part: str | None = None,
) -> Path:
    """Write ``<runs_root>/end_to_end.json`` (``end_to_end-<part>.json`` for one part): one uninterrupted
    invocation ran all ``done`` jobs of the profile (or part) in ``seconds`` (wall clock, one number for
    the whole reproduction), with the machine, the workers and the commit. `run_profile` calls it only
    when no job was skipped; `collect` copies it into ``reproduction.json`` (``end_to_end_minutes``)."""
    record = (
        {"profile": cfg.profile, "part": part or "all"}
        | _timed_record(done, seconds, started)
        | {
            "workers": workers or 1,
            "scheduler": bool(scheduler),  # on an existing Dask cluster (its size is not known here)
        }
    )
    out = cfg.runs_root / end_to_end_file(part)
    write_json(out, record, schema="end_to_end")
    return out
