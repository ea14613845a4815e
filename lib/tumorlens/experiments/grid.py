"""The job grid on one machine or many: jobs become Dask tasks with their dependencies.

    tumorlens run --profile cpu --workers 4              # a LocalCluster of 4 single-threaded workers
    tumorlens run --profile paper --scheduler tcp://head:8786   # an existing cluster (Slurm, PBS, Kubernetes)

A job depends on the jobs whose run directories its parameters name (`tumorlens.experiments.jobs`:
the explain step's candidate models, the ensemble's members, the robustness step's model, the ViT's
CNN); everything else runs side by side. Each task calls `tumorlens.experiments.runner.execute` --
the same skip-if-current check, the same completion record, each job writing only its own run
directory -- so a parallel run resumes exactly like a sequential one. A failing job is reported with
its notebook and cell, its dependants are not started, and every other job runs to the end; the
failures are raised together once the grid is done.

Workers run the notebooks in the repository's working tree at the same path (a shared file system on
a cluster) and share ``$TUMORLENS_CACHE``, whose entries are written once under a lock and replaced
atomically (`tumorlens.utils.files.key_lock`). Without ``workers``/``scheduler`` the jobs run one
after another in this process, as before.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from tumorlens import paths
from tumorlens.config import TRACE_ENV, load_config, trace_sections
from tumorlens.errors import NotebookFailed, TumorlensError
from tumorlens.experiments.jobs import DONE, Job, job_inputs, notebook_dir, plan, stale_reasons, upstream_runs
from tumorlens.experiments.steps import STEPS, check_run, code_fingerprint
from tumorlens.utils.environment import git_commit
from tumorlens.utils.files import write_json
from tumorlens.utils.progress import progress

__all__ = [
    "execute",
    "dependencies",
    "run_jobs",
    "GridUnavailableError",
    "schedule_seconds",
    "projected_minutes",
    "comparable_results",
]

#: The environment a worker's kernels need from the process that planned the grid (thread pools,
#: caches, data and runs roots): sent with each task, since a remote worker does not inherit it.
_FORWARDED_ENV = (
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_CPP_MIN_LOG_LEVEL",
    "TUMORLENS_CACHE",
    "TUMORLENS_DATA",
    "TUMORLENS_RUNS",
    "TUMORLENS_CONFIG",
    "TUMORLENS_PROGRESS",
    # Dask's nanny starts workers with one BLAS/OpenMP thread; the kernels get what the planning process
    # has (unset: the libraries' defaults), so a job computes the same numbers on the grid as in sequence
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


class GridUnavailableError(TumorlensError):
    """``--workers``/``--scheduler`` without Dask installed, or a scheduler that cannot be reached."""


def _to_ipynb(py: Path, dest: Path) -> Path:
    import jupytext

    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


def _source_cell(executed: Path, cell_index: int) -> tuple[int, str]:
    """(1-based cell number in the source notebook, its first line) of the cell that raised in the
    executed notebook (the one with an error output), not counting the cells papermill adds."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return cell_index + 1, ""
    k = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            continue
        k += 1
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            lines = cell.source.strip().splitlines()
            return k, (lines[0] if lines else "")
    return cell_index + 1, ""


def execute(job: Job, *, force: bool = False, log_output: bool = False, notebooks: Path | None = None) -> str:
    """Run one job; returns ``"skipped"`` when its outputs are complete, else ``"ran"``.

    ``notebooks`` is the folder holding ``<job.notebook>.py`` (default: the repository's ``notebooks/``).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    inputs = job_inputs(job, notebooks)
    # what made the products, taken before they are made: a commit or an edit while the job runs is not theirs
    commit = git_commit()
    code = code_fingerprint(job.notebook) if job.notebook in STEPS else None
    reasons = [] if force else stale_reasons(job, notebooks, inputs)
    if not force and not reasons:
        return "skipped"
    if job.done and reasons:
        print(f"rerunning {paths.relative(job.run_dir)}: {'; '.join(reasons)}", file=sys.stderr)
    src = (notebooks or notebook_dir()) / f"{job.notebook}.py"
    if not src.is_file():
        raise FileNotFoundError(f"notebook source not found: {src}")
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / DONE).unlink(missing_ok=True)
    source_nb = _to_ipynb(src, job.run_dir / "source.ipynb")
    checked = job.notebook in STEPS and job.params.get("mode", "run") == "run"
    trace = job.run_dir / ".settings-trace"
    trace.unlink(missing_ok=True)
    old_trace = os.environ.get(TRACE_ENV)
    if checked:  # the kernel records every settings section it reads (checked against the step's declaration)
        os.environ[TRACE_ENV] = str(trace)
    t0 = time.time()
    try:
        pm.execute_notebook(
            str(source_nb),
            str(job.output),
            parameters=job.params,
            kernel_name="python3",
            language="python",
            cwd=str(paths.repo_root()),
            progress_bar=False,
            log_output=log_output,
        )
    except PapermillExecutionError as exc:
        cell, first_line = _source_cell(job.output, exc.cell_index)
        raise NotebookFailed(
            f"notebook {src.name} failed in cell {cell} ({exc.ename}: {exc.evalue}) — the cell starting "
            f"{first_line!r}; parameters {json.dumps(job.params)}; the partly executed notebook is {job.output}"
        ) from None
    finally:
        source_nb.unlink(missing_ok=True)
        if old_trace is None:
            os.environ.pop(TRACE_ENV, None)
        else:
            os.environ[TRACE_ENV] = old_trace
    if checked:
        check_run(job.notebook, job.run_dir, trace_sections(trace))
        trace.unlink(missing_ok=True)
    write_json(
        job.run_dir / DONE,
        {
            "notebook": job.notebook,
            "params": job.params,
            "seconds": round(time.time() - t0, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") + f" ({time.time_ns()})",  # each completion differs
            "inputs": inputs,
            "commit": commit,
            "code": code,
        },
    )
    return "ran"


def dependencies(jobs: Sequence[Job]) -> list[list[int]]:
    """For each job, the indices of the jobs in ``jobs`` it must wait for (those whose run directory
    its parameters name); a job never waits for one after it in the plan."""
    index = {j.run_dir.resolve(): i for i, j in enumerate(jobs)}
    out = []
    for i, job in enumerate(jobs):
        deps = sorted({index[r] for r in (Path(p).resolve() for p in upstream_runs(job)) if r in index})
        if any(d >= i for d in deps):
            raise ValueError(f"{job.notebook} ({job.run_dir}) depends on a job planned after it")
        out.append(deps)
    return out


def _task(job: Job, force: bool, notebooks: str | None, env: dict, *upstream: str) -> str:
    """One job on a worker: ``ran``/``skipped``, ``failed: ...`` or ``not run: ...`` (never raises)."""
    if any(u.startswith(("failed", "not run")) for u in upstream):
        return "not run: a job it depends on failed"
    for k in _FORWARDED_ENV:  # unset in the planning process: unset here too
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    try:
        return execute(job, force=force, notebooks=Path(notebooks) if notebooks else None)
    except NotebookFailed as exc:
        return f"failed: {exc}"
    except Exception as exc:  # a worker reports every failure; the grid goes on with the others
        return f"failed: {job.notebook} ({paths.relative(job.run_dir)}): {type(exc).__name__}: {exc}"


def _client(workers: int | None, scheduler: str | None):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise GridUnavailableError(
            "--workers/--scheduler run the grid on Dask, which is not installed: pip install 'tumorlens[grid]' "
            "(or pip install 'dask[distributed]')"
        ) from exc
    if scheduler:
        try:
            return Client(scheduler, timeout=30), None
        except (OSError, TimeoutError) as exc:
            raise GridUnavailableError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; received workers={workers!r}")
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    return Client(cluster), cluster


def run_jobs(
    jobs: Sequence[Job],
    *,
    force: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    notebooks: Path | None = None,
    show_progress: bool = True,
    after=None,
) -> list[tuple[Job, str]]:
    """Run ``jobs``: one after another (default), or on Dask with ``workers`` local processes or on the
    cluster at ``scheduler``. Returns ``[(job, "ran" | "skipped")]`` in plan order; raises
    `NotebookFailed` naming every failed job (after the others finished, on Dask). ``after(job)`` is
    called in this process for each job that ran, as soon as it finished."""
    if not workers and not scheduler:
        out = []
        for job in progress(jobs, desc="notebooks", unit="nb", disable=not show_progress):
            status = execute(job, force=force, notebooks=notebooks)
            if status == "ran" and after is not None:
                after(job)
            out.append((job, status))
        return out
    deps = dependencies(jobs)
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    client, cluster = _client(workers, scheduler)
    t0 = time.time()
    try:
        from dask.distributed import as_completed

        futures = []
        for i, job in enumerate(jobs):
            futures.append(
                client.submit(
                    _task,
                    job,
                    force,
                    str(notebooks) if notebooks else None,
                    env,
                    *[futures[d] for d in deps[i]],
                    key=f"{job.notebook}-{i}-{time.time_ns()}",
                    pure=False,
                )
            )
        where = {f.key: i for i, f in enumerate(futures)}
        status: list[str] = [""] * len(jobs)
        n_workers = len(client.scheduler_info()["workers"])
        done = as_completed(futures)
        for fut in progress(done, total=len(jobs), desc=f"notebooks ({n_workers} workers)", disable=not show_progress):
            i = where[fut.key]
            status[i] = fut.result()
            if status[i] == "ran" and after is not None:
                after(jobs[i])
            print(
                f"{status[i].split(':')[0]:8s} {jobs[i].notebook}  {paths.relative(jobs[i].run_dir)}", file=sys.stderr
            )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    failed = [s for s in status if s.startswith("failed")]
    if failed:
        skipped = sum(s.startswith("not run") for s in status)
        raise NotebookFailed(
            f"{len(failed)} of {len(jobs)} jobs failed on the grid ({skipped} not started because of them; "
            f"the others finished and are kept, {time.time() - t0:.0f} s):\n" + "\n".join(failed)
        )
    return list(zip(jobs, status))


def schedule_seconds(seconds: Sequence[float], deps: Sequence[Sequence[int]], workers: int) -> float:
    """Wall time of running jobs of the given durations on ``workers`` equal workers: each job starts, in
    plan order, on the first free worker once the jobs it depends on have finished (list scheduling,
    as the Dask scheduler runs them when every worker is as fast as the one that timed them)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; received workers={workers!r}")
    free = [0.0] * workers
    end = [0.0] * len(seconds)
    for i, sec in enumerate(seconds):
        w = min(range(workers), key=free.__getitem__)
        start = max([free[w], *(end[d] for d in deps[i])])
        end[i] = free[w] = start + float(sec or 0)
    return max(end, default=0.0)


def projected_minutes(profile: str, timing: dict, workers: Sequence[int] = (1, 2, 4, 8)) -> dict:
    """The profile's reproduction on N workers, from the per-job times of ``reproduction.json``
    (``timing``) and the plan's dependencies: ``{"workers": {N: minutes}, "critical_path": minutes,
    "jobs_timed": n, "jobs": n}``. Jobs without a time count as zero (and ``jobs_timed`` says so)."""
    jobs = plan(profile)
    base = load_config(profile).runs_root.parent
    by_name = {j["job"]: j["seconds"] for j in timing["jobs"]}
    names = []
    for j in jobs:
        try:
            names.append(j.run_dir.relative_to(base).as_posix())
        except ValueError:  # the smoke-profile evidence runs of another root
            names.append(j.run_dir.relative_to(load_config("smoke").runs_root.parent).as_posix())
    seconds = [by_name.get(n) or 0.0 for n in names]
    deps = dependencies(jobs)
    return {
        "workers": {int(n): round(schedule_seconds(seconds, deps, n) / 60, 1) for n in workers},
        "critical_path": round(schedule_seconds(seconds, deps, len(jobs)) / 60, 1),
        "jobs_timed": sum(n in by_name for n in names),
        "jobs": len(jobs),
    }


#: Keys (JSON) and columns (CSV) that time a run or name where it ran: they differ between any two runs.
_VOLATILE = ("seconds", "timings", "environment", "finished", "run_dir", "elapsed", "ms_per_image", "latency")


def comparable_results(root: str | os.PathLike) -> dict[str, object]:
    """The JSON and CSV files under a runs folder, as what two runs of the same jobs must agree on: JSON
    without the keys and CSV without the columns that time things or name paths, the folder's own path
    replaced by ``<root>``. Keyed by the path relative to ``root``."""
    root = Path(root)

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not any(v_ in k for v_ in _VOLATILE)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out: dict[str, object] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.name.startswith(".") or f.suffix not in (".csv", ".json"):
            continue
        text = f.read_text().replace(str(root.parent), "<root>")
        if f.suffix == ".csv":
            rows = csv.DictReader(io.StringIO(text))
            out[f.relative_to(root).as_posix()] = [strip(dict(r)) for r in rows]
        else:
            out[f.relative_to(root).as_posix()] = strip(json.loads(text))
    return out
