"""The declared pipeline: step declarations checked on every run, job records, resuming from published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tumorlens.config import load_config
from tumorlens.experiments import steps
from tumorlens.experiments.grid import execute
from tumorlens.experiments.jobs import STATES, Job, job_inputs, job_state, plan, portable_inputs, run_name

REPO = Path(__file__).resolve().parents[1]

# what the explain step does first (tumorlens.explain.scoring.evaluate_segmentation): the determinism
# settings of the classifier's training section
READS_TRAIN = """# %% tags=["parameters"]
profile = "smoke"
run_dir = ""

# %%
from tumorlens.config import load_config
from tumorlens.utils import determinism

cfg = load_config(profile)
determinism.configure(cfg.train.deterministic, cfg.train.threads)
print(cfg.segment.cam)
"""

WRITES = """# %% tags=["parameters"]
profile = "smoke"
run_dir = ""
name = "robustness.json"

# %%
from pathlib import Path
Path(run_dir, name).write_text("{}")
"""


@pytest.fixture
def nbs(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    (d / "03_explain.py").write_text(READS_TRAIN)
    (d / "05_robustness.py").write_text(WRITES)
    return d


def test_a_step_that_reads_an_undeclared_section_fails(nbs, tmp_path, monkeypatch):
    job = Job("03_explain", tmp_path / "explain", {"profile": "smoke", "run_dir": str(tmp_path / "explain")})
    assert "train" in steps.STEPS["03_explain"].settings
    assert execute(job, notebooks=nbs) == "ran"  # declared: data, audit, model, train, segment
    # the declaration as it was before (without train): the explain step's read of cfg.train is caught
    old = steps.STEPS["03_explain"]
    monkeypatch.setitem(
        steps.STEPS, "03_explain", steps.Step(**{**old.__dict__, "settings": ("data", "audit", "model", "segment")})
    )
    with pytest.raises(steps.StepDeclarationError, match=r"read settings section\(s\) \['train'\]"):
        execute(job, notebooks=nbs, force=True)
    assert not job.done  # a job that breaks its declaration is not recorded as finished


def test_a_step_that_writes_an_undeclared_file_fails(nbs, tmp_path):
    run = tmp_path / "rob"
    ok = Job("05_robustness", run, {"profile": "smoke", "run_dir": str(run)})
    assert execute(ok, notebooks=nbs) == "ran"
    bad = Job(
        "05_robustness", tmp_path / "rob2", {"profile": "smoke", "run_dir": str(tmp_path / "rob2"), "name": "x.txt"}
    )
    with pytest.raises(steps.StepDeclarationError, match=r"wrote \['x.txt'\] that no product of it declares"):
        execute(bad, notebooks=nbs)


def test_every_planned_step_is_declared_and_file_names_come_from_the_registry():
    for profile in ("smoke", "cpu"):
        for job in plan(profile):
            assert job.notebook in steps.STEPS
    assert steps.file("03_explain", "segmentation") == "summary.json"
    assert steps.file("02_train", "metrics") == "metrics.json"
    with pytest.raises(KeyError, match="declares no product"):
        steps.file("01_data", "segmentation")
    assert steps.undeclared_sections("01_data", ["data", "train"]) == ["train"]
    fp = steps.code_fingerprint("02_train")
    assert len(fp) == 16 and fp != steps.code_fingerprint("03_explain")


def test_the_published_cpu_results_resume_without_runs(tmp_path, monkeypatch):
    """On a machine without runs/, every job of the cpu plan whose products are published is `published`;
    a changed explain setting makes exactly the explain jobs `to run` (reading committed results only)."""
    if not (REPO / "results" / "cpu" / "jobs.json").is_file():
        pytest.skip("no published cpu job records")
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))  # an empty runs root
    jobs = plan("cpu")
    states = {run_name(j.run_dir, "cpu"): job_state(j) for j in jobs}
    assert all(s in STATES for s, _ in states.values())
    published = {n for n, (s, _) in states.items() if s == "published"}
    assert "cpu/efficientnet_lite1/seed-43" in published and "cpu/explain" in published and "cpu/data" in published
    cfg_file = tmp_path / "_config.yml"
    cfg_file.write_text((REPO / "_config.yml").read_text().replace("    iterations: 5", "    iterations: 4", 1))
    monkeypatch.setenv("TUMORLENS_CONFIG", str(cfg_file))
    changed = {run_name(j.run_dir, "cpu"): job_state(j)[0] for j in plan("cpu")}
    newly = {n for n in published if changed.get(n) != "published"}
    assert newly and all(n.startswith(("cpu/explain", "cpu/explain-seeds/", "cpu/localisation")) for n in newly), newly


def test_portable_inputs_name_runs_relative_to_the_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    root = load_config("smoke").runs_root
    job = Job("04_ensembles", root / "ensembles", {"profile": "smoke", "member_runs": [str(root / "a" / "seed-1")]})
    p = portable_inputs(job_inputs(job), "smoke")
    assert p["params"]["member_runs"] == ["smoke/a/seed-1"] and list(p["upstream"]) == ["smoke/a/seed-1"]
    json.dumps(p)


def test_every_command_defaults_to_the_published_profile():
    import argparse

    from tumorlens.cli import DEFAULT_PROFILE, build_parser
    from tumorlens.experiments.published import PUBLISHED_PROFILE

    assert DEFAULT_PROFILE == PUBLISHED_PROFILE
    defaults = []

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, sp in a.choices.items():
                    walk(sp, f"{name} {sub}")
            elif "--profile" in a.option_strings:
                defaults.append((name, a.default))

    walk(build_parser(), "tumorlens")
    assert len(defaults) >= 9 and {d for _, d in defaults} == {DEFAULT_PROFILE}, defaults


def test_a_retrain_that_reproduces_the_published_run_keeps_its_stamp(tmp_path, monkeypatch):
    """A published training job run again for its weights keeps the published stamp when its test and
    validation predictions are the published ones byte for byte (what was made from it stays current);
    one that differs keeps its own stamp, and so does a job whose inputs are not the published job's."""
    from tumorlens.experiments.collect import REPRODUCED_BY, keep_published_stamp
    from tumorlens.experiments.jobs import DONE, JOB_RECORDS, results_location, stamp
    from tumorlens.utils.files import write_json

    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TUMORLENS_RESULTS", str(tmp_path / "results"))
    job = next(j for j in plan("smoke") if j.notebook == "02_train")
    res = tmp_path / "results" / "smoke"
    pub = results_location(job, res)
    for d in (pub, job.run_dir):
        d.mkdir(parents=True)
        for f in REPRODUCED_BY:
            (d / f).write_text("path,p\nx.jpg,0.250000\n")
    inputs = job_inputs(job)
    rec = {"inputs": portable_inputs(inputs, "smoke"), "finished": "published-stamp"}
    write_json(res / JOB_RECORDS, {"profile": "smoke", "jobs": {run_name(job.run_dir, "smoke"): rec}}, schema="jobs")
    write_json(job.run_dir / DONE, {"finished": "rerun-stamp", "inputs": inputs})
    (job.run_dir / REPRODUCED_BY[0]).write_text("path,p\nx.jpg,0.250001\n")  # one probability moved
    assert not keep_published_stamp(job, "smoke") and stamp(job.run_dir) == "rerun-stamp"
    (job.run_dir / REPRODUCED_BY[0]).write_text("path,p\nx.jpg,0.250000\n")
    assert keep_published_stamp(job, "smoke") and stamp(job.run_dir) == "published-stamp"
    assert "equal the published ones" in json.loads((job.run_dir / DONE).read_text())["reproduced"]
    other = next(j for j in plan("smoke") if j.notebook == "02_train" and j.run_dir != job.run_dir)
    assert not keep_published_stamp(other, "smoke")  # not run here
    explain = next(j for j in plan("smoke") if j.notebook == "03_explain")
    assert not keep_published_stamp(explain, "smoke")  # only training jobs
