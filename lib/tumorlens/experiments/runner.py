"""Execute the paper's notebooks with papermill, one output folder per run.

A *job* is one notebook with one set of parameters, executed into its own run directory
(``runs/<profile>/<...>/notebook.ipynb``). A job whose run directory holds a completed notebook is
skipped, so an interrupted `run_profile` resumes where it stopped. A failing notebook stops the
run with `NotebookFailed`, whose message names the notebook and the failing cell.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tumorlens import paths
from tumorlens.config import PAPER_MODULES, load_config
from tumorlens.errors import NotebookFailed
from tumorlens.experiments.collect import collect
from tumorlens.models.classifier import variant_name
from tumorlens.records import published_run
from tumorlens.utils.progress import progress

__all__ = ["Job", "NotebookFailed", "plan", "book_pages", "execute", "run_profile", "notebook_dir"]

DONE = ".done.json"


@dataclass(frozen=True)
class Job:
    notebook: str  # stem of notebooks/<stem>.py
    run_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    page: str | None = None  # name of the book page this run's notebook becomes, if any
    title: str | None = None  # that page's title (replaces the notebook's first heading)

    @property
    def output(self) -> Path:
        return self.run_dir / "notebook.ipynb"

    @property
    def done(self) -> bool:
        return (self.run_dir / DONE).is_file() and self.output.is_file()


def notebook_dir() -> Path:
    return paths.repo_root() / "notebooks"


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
    )


def plan(profile: str) -> list[Job]:
    """The jobs of a profile, in order (later notebooks read what earlier ones saved).

    data -> standard and all-modules variants over ``reproduce.seeds`` (RQ1) -> each module alone ->
    all modules warm-up only (RQ4) -> the ViT (RQ5) -> the other backbones on the smoke profile
    (labelled evidence) -> explain-and-segment (RQ3) -> ensembles (RQ2) -> results (RQ1-RQ5).
    """
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
    cnn_runs = [j.run_dir for j in jobs[1:]]
    if r.ablations:
        for mod in PAPER_MODULES:
            jobs.append(_train_job(profile, root, bb, (mod,), first))
            cnn_runs.append(jobs[-1].run_dir)
    if r.warmup_only:
        jobs.append(
            _train_job(
                profile, root, bb, PAPER_MODULES, first, tag="warmup-only", overrides={"train.finetune_epochs": 0}
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
        jobs.append(
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
            )
        )
    smoke_root = load_config("smoke").runs_root
    for other in r.other_backbones:
        jobs.append(_train_job("smoke", smoke_root, other, (), load_config("smoke").seed))
    explained = root / f"{bb}+{'+'.join(PAPER_MODULES)}" / f"seed-{first}"
    jobs.append(
        Job(
            "03_explain",
            root / "explain",
            {
                "profile": profile,
                "model_run": "",
                "candidate_runs": [str(p) for p in cnn_runs],
                "run_dir": str(root / "explain"),
            },
        )
    )
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
    jobs.append(
        Job(
            "05_robustness",
            root / "robustness",
            {"profile": profile, "model_run": str(explained), "run_dir": str(root / "robustness")},
        )
    )
    return jobs


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

    if job.done and not force:
        return "skipped"
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
    (job.run_dir / DONE).write_text(
        json.dumps({"notebook": job.notebook, "params": job.params, "seconds": round(time.time() - t0, 1)})
    )
    return "ran"


def run_profile(
    profile: str,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    show_progress: bool = True,
    collect_results: bool = True,
) -> list[tuple[Job, str]]:
    """Execute every job of ``profile`` (or those whose notebook is in ``only``), skipping complete
    ones, then gather the results into ``results/<profile>/`` (`tumorlens.results.collect`)."""
    jobs = [j for j in plan(profile) if not only or j.notebook in only]
    done = []
    for job in progress(jobs, desc=f"notebooks ({profile})", unit="nb", disable=not show_progress):
        done.append((job, execute(job, force=force)))
    if collect_results and not only:
        collect(profile)
    return done
