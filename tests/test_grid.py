"""The job grid on Dask: dependencies, side-by-side jobs, failures that keep the others, resuming;
and cache entries written once when two workers want the same key."""

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from tumorlens.errors import NotebookFailed
from tumorlens.experiments.grid import comparable_results, dependencies, run_jobs, schedule_seconds
from tumorlens.experiments.jobs import Job, plan

pytest.importorskip("dask.distributed")

NB = """# %% tags=["parameters"]
value = 1
out = ""
model_run = ""

# %%
from pathlib import Path
if value < 0:
    raise ValueError("negative value")
before = Path(model_run, "out.txt").read_text() if model_run else ""
Path(out).write_text(before + str(value * 2))
"""


def test_dependencies_are_the_runs_a_job_reads():
    jobs = plan("smoke")
    deps = dependencies(jobs)
    name = {i: j.notebook for i, j in enumerate(jobs)}
    by_nb = {j.notebook: i for i, j in enumerate(jobs)}
    assert deps[by_nb["01_data"]] == [] and all(deps[i] == [] for i in name if name[i] == "02_train")
    explain = jobs[by_nb["03_explain"]]
    assert [jobs[d].run_dir for d in deps[by_nb["03_explain"]]] == [Path(p) for p in explain.params["candidate_runs"]]
    assert {name[d] for d in deps[by_nb["04_ensembles"]]} == {"02_train"}
    assert [jobs[d].run_dir for d in deps[by_nb["02_vit"]]] == [Path(jobs[by_nb["02_vit"]].params["cnn_run"])]
    with pytest.raises(ValueError, match="planned after it"):
        dependencies([jobs[by_nb["04_ensembles"]], *jobs])


def _job(tmp_path, name, value, upstream=None):
    run = tmp_path / name
    return Job("nb", run, {"value": value, "out": str(run / "out.txt"), "model_run": str(upstream or "")})


def test_grid_runs_jobs_side_by_side_keeps_the_others_on_failure_and_resumes(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "nb.py").write_text(NB)
    a = _job(tmp_path, "a", 1)
    b = _job(tmp_path, "b", 2)
    c = _job(tmp_path, "c", 3, a.run_dir)  # reads a's output: runs after it
    bad = _job(tmp_path, "bad", -1)
    after_bad = _job(tmp_path, "after_bad", 5, bad.run_dir)
    jobs = [a, b, c, bad, after_bad]
    with pytest.raises(NotebookFailed) as err:
        run_jobs(jobs, workers=2, notebooks=nbs, show_progress=False)
    msg = str(err.value)
    assert "1 of 5 jobs failed" in msg and "1 not started" in msg and "nb.py failed in cell" in msg
    assert "ValueError: negative value" in msg
    assert (c.run_dir / "out.txt").read_text() == "26" and (b.run_dir / "out.txt").read_text() == "4"
    assert a.done and b.done and c.done and not bad.done and not after_bad.run_dir.exists()
    # a killed run: c's completion record never got written; the rerun does c again and skips the rest
    (c.run_dir / ".done.json").unlink()
    done = run_jobs([a, b, c], workers=2, notebooks=nbs, show_progress=False)
    assert [s for _, s in done] == ["skipped", "skipped", "ran"]
    sequential = run_jobs([a, b, c], notebooks=nbs, show_progress=False)
    assert [s for _, s in sequential] == ["skipped"] * 3


def test_workers_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="workers=0"):
        from tumorlens.experiments.grid import _client

        _client(0, None)


WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from tumorlens.utils.files import cached, save_npy

path, log = Path(sys.argv[1]), Path(sys.argv[2])

def compute():
    with log.open("a") as f:
        f.write("computed\\n")
    time.sleep(1.0)
    return np.arange(1000, dtype=np.int64)

value = cached(path, lambda p: np.load(p), compute, save_npy)
print(int(value.sum()))
"""


def test_two_workers_asking_for_one_cache_key_compute_it_once(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    entry, log = tmp_path / "cache" / "key.npy", tmp_path / "log.txt"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(entry), str(log)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == [str(sum(range(1000)))] * 2
    assert log.read_text() == "computed\n"  # one writer; the other waited and read its entry
    assert [f.name for f in entry.parent.iterdir() if ".tmp" in f.name] == []  # no partial files left


@pytest.mark.slow
@pytest.mark.full
def test_smoke_jobs_on_two_workers_give_the_sequential_results(tmp_path, monkeypatch):
    """Two training runs: on two Dask workers (side by side, both preparing the same phantoms at once)
    and one after another, the same result files (times and paths aside). The whole smoke grid, the
    explain step included, is compared by benchmarks/grid.py.

    Fast counterparts: test_grid_runs_jobs_side_by_side_keeps_the_others_on_failure_and_resumes (jobs on two
    Dask workers), test_train.py::test_two_reruns_in_fresh_processes_are_identical (a training run in two
    processes side by side gives the same files) and tests/test_smoke_book.py (the whole smoke grid, one job after
    another)."""
    outputs = {}
    for mode in ("sequential", "grid"):
        monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / mode))
        monkeypatch.setenv("TUMORLENS_CACHE", str(tmp_path / f"cache-{mode}"))  # phantoms made by the jobs
        small = {"data.phantoms.train_per_class": 20}  # fewer phantoms: the same code paths, less training
        train = [
            replace(j, params={**j.params, "overrides": small}) for j in plan("smoke") if j.notebook == "02_train"
        ][:2]
        from tumorlens.config import load_config
        from tumorlens.experiments.runner import kernel_threads

        kernel_threads(load_config("smoke").train)
        run_jobs(train, workers=2 if mode == "grid" else None, show_progress=False)
        outputs[mode] = comparable_results(tmp_path / mode / "smoke")
    assert outputs["grid"].keys() == outputs["sequential"].keys() and len(outputs["grid"]) >= 8
    for name, content in outputs["sequential"].items():
        assert outputs["grid"][name] == content, name


def test_schedule_follows_dependencies_and_free_workers():
    # a -> c, b independent; d after c
    seconds, deps = [10, 4, 5, 1], [[], [], [0], [2]]
    assert schedule_seconds(seconds, deps, 1) == 20
    assert schedule_seconds(seconds, deps, 2) == 16  # a|b, then c after a, d after c
    assert schedule_seconds(seconds, deps, 8) == 16  # the critical path a-c-d
    with pytest.raises(ValueError, match="workers=0"):
        schedule_seconds(seconds, deps, 0)


SLOW_NB = """# %% tags=["parameters"]
out = ""
hold = ""

# %%
import time
from pathlib import Path
while hold and Path(hold).exists():  # the first run is killed while it waits here
    time.sleep(0.2)
Path(out).write_text("done")
"""

KILLED_GRID = """
import sys
from pathlib import Path
from tumorlens.experiments.grid import run_jobs
from tumorlens.experiments.jobs import Job
tmp, nbs = Path(sys.argv[1]), Path(sys.argv[2])
jobs = [Job("slow", tmp / n, {"out": str(tmp / n / "out.txt"), "hold": str(tmp / "hold") if n == "b" else ""})
        for n in ("a", "b")]
run_jobs(jobs, workers=2, notebooks=nbs, show_progress=False)
"""


@pytest.mark.full
def test_a_killed_grid_resumes_with_what_it_finished(tmp_path):
    """The grid process and its workers and kernels are killed while one job runs; the rerun skips the
    job that finished and runs the other.

    Fast counterpart: test_grid_runs_jobs_side_by_side_keeps_the_others_on_failure_and_resumes (a job whose
    completion record was never written runs again, the finished ones are skipped)."""
    import os
    import signal
    import time

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "slow.py").write_text(SLOW_NB)
    (tmp_path / "hold").write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_GRID, str(tmp_path), str(nbs)], start_new_session=True, stderr=subprocess.PIPE
    )
    a, b = (Job("slow", tmp_path / n, {}) for n in ("a", "b"))
    deadline = time.time() + 120
    while not a.done and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert a.done, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "job a did not finish"
    time.sleep(2)  # b runs beside a and waits on the hold file
    os.killpg(proc.pid, signal.SIGKILL)  # the whole grid: client, scheduler, workers, kernels
    proc.wait(timeout=30)
    assert not b.done and not (b.run_dir / "out.txt").exists()
    (tmp_path / "hold").unlink()
    jobs = [
        Job(
            "slow",
            tmp_path / n,
            {"out": str(tmp_path / n / "out.txt"), "hold": str(tmp_path / "hold") if n == "b" else ""},
        )
        for n in ("a", "b")
    ]
    done = run_jobs(jobs, workers=2, notebooks=nbs, show_progress=False)
    assert [s for _, s in done] == ["skipped", "ran"] and (b.run_dir / "out.txt").read_text() == "done"


def test_a_jobs_record_names_the_commit_it_started_from(tmp_path, monkeypatch):
    """A commit made while a job runs is not what made its products: the completion record takes the commit
    (and the code fingerprint) before the notebook runs."""
    from tumorlens.experiments import grid

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "nb.py").write_text(NB)
    seen = iter([{"commit": "started-at", "dirty": False}])
    monkeypatch.setattr(grid, "git_commit", lambda: next(seen, {"commit": "a later commit", "dirty": False}))
    job = _job(tmp_path, "a", 1)
    assert grid.execute(job, notebooks=nbs) == "ran"
    assert json.loads((job.run_dir / ".done.json").read_text())["commit"] == {"commit": "started-at", "dirty": False}
