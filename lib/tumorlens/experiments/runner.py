"""Execute the paper's notebooks with papermill, one output folder per run.

A *job* (`tumorlens.experiments.jobs`) is one notebook with one set of parameters, executed into
its own run directory (``runs/<profile>/<...>/notebook.ipynb``). A job whose run directory holds a
completed, current notebook is skipped, so an interrupted `run_profile` resumes where it stopped; a
job whose inputs changed since it completed (parameters, notebook, the settings it reads, the runs
it reads) is rerun and the runner says why (`stale_reasons`). A failing notebook stops the run
with `NotebookFailed`, whose message names the notebook and the failing cell.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from tumorlens import paths
from tumorlens.config import PAPER_MODULES, load_config
from tumorlens.errors import NotebookFailed
from tumorlens.experiments.collect import collect
from tumorlens.experiments.jobs import (
    DONE,
    SETTINGS_READ,
    Job,
    job_inputs,
    notebook_dir,
    plan,
    stale_reasons,
)
from tumorlens.records import published_run
from tumorlens.utils.environment import git_commit
from tumorlens.utils.files import write_json

__all__ = [
    "Job",
    "DONE",
    "NotebookFailed",
    "plan",
    "book_pages",
    "execute",
    "run_profile",
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
        page("03_explain", "03_explain", {"mode": "report", "run_dir": str(results / "segmentation")}),
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
    ]


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

    reasons = [] if force else stale_reasons(job, notebooks)
    if not force and not reasons:
        return "skipped"
    if job.done and reasons:
        print(f"rerunning {paths.relative(job.run_dir)}: {'; '.join(reasons)}", file=sys.stderr)
    inputs = job_inputs(job, notebooks)
    src = (notebooks or notebook_dir()) / f"{job.notebook}.py"
    if not src.is_file():
        raise FileNotFoundError(f"notebook source not found: {src}")
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / DONE).unlink(missing_ok=True)
    source_nb = _to_ipynb(src, job.run_dir / "source.ipynb")
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
    write_json(
        job.run_dir / DONE,
        {
            "notebook": job.notebook,
            "params": job.params,
            "seconds": round(time.time() - t0, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") + f" ({time.time_ns()})",  # each completion differs
            "inputs": inputs,
            "commit": git_commit(),
        },
    )
    return "ran"


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
    force: bool = False,
    show_progress: bool = True,
    collect_results: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
) -> list[tuple[Job, str]]:
    """Execute every job of ``profile`` (or those whose notebook is in ``only``), skipping complete
    ones, then gather the results into ``results/<profile>/`` (`tumorlens.results.collect`).

    ``workers``/``scheduler``: run the jobs on Dask (`tumorlens.experiments.grid`), side by side where
    they do not depend on each other."""
    from tumorlens.experiments.grid import run_jobs

    jobs = [j for j in plan(profile) if not only or j.notebook in only]
    kernel_threads(load_config(profile).train)
    done = run_jobs(jobs, force=force, workers=workers, scheduler=scheduler, show_progress=show_progress)
    if collect_results and not only:
        collect(profile)
    return done
