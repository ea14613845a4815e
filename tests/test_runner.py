import json
from pathlib import Path

import pytest

from tumorlens.config import load_config
from tumorlens.errors import NotebookFailed
from tumorlens.experiments.runner import Job, execute, plan
from tumorlens.models.backbones import get_spec

NB = """# %% tags=["parameters"]
value = 1

# %%
from pathlib import Path
Path(out).write_text(str(value * 2))

# %%
if value < 0:
    raise ValueError("negative value")
"""


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    (d / "double.py").write_text(NB)
    return d


def test_execute_runs_with_parameters_then_skips_when_complete(nbdir, tmp_path):
    out = tmp_path / "result.txt"
    job = Job("double", tmp_path / "run", {"value": 21, "out": str(out)})
    assert execute(job, notebooks=nbdir) == "ran"
    assert out.read_text() == "42" and job.output.is_file() and job.done
    out.unlink()
    assert execute(job, notebooks=nbdir) == "skipped" and not out.exists()
    assert execute(job, notebooks=nbdir, force=True) == "ran" and out.read_text() == "42"


def test_a_failing_notebook_names_itself_and_the_cell(nbdir, tmp_path):
    job = Job("double", tmp_path / "bad", {"value": -1, "out": str(tmp_path / "x.txt")})
    with pytest.raises(NotebookFailed) as err:
        execute(job, notebooks=nbdir)
    msg = str(err.value)
    assert "double.py" in msg and "failed in cell 3 " in msg and "ValueError: negative value" in msg
    assert "'if value < 0:'" in msg
    assert not job.done  # an interrupted or failed job is rerun next time


def test_profiles_plan_their_own_run_folders():
    smoke, cpu = plan("smoke"), plan("cpu")
    assert all("/smoke/" in str(j.run_dir) for j in smoke)
    own = [j for j in cpu if j.params["profile"] == "cpu"]
    evidence = [j for j in cpu if j.params["profile"] != "cpu"]  # the other backbones, on synthetic data only
    assert all("/cpu/" in str(j.run_dir) for j in own)
    assert {j.params["backbone"] for j in evidence} == {"mobilenetv2", "efficientnetb0", "vgg16"}
    assert all("/smoke/" in str(j.run_dir) for j in evidence)
    assert [j.notebook for j in smoke][:2] == ["01_data", "02_train"]
    assert len({j.run_dir for j in smoke}) == len(smoke)
    json.dumps([j.params for j in smoke])  # parameters are plain literals


def plan_has_study(profile: str) -> bool:
    return any("@cf" in str(j.run_dir) for j in plan(profile))


def test_the_plan_splits_into_a_self_contained_headline_a_supplementary_part_and_the_study():
    from tumorlens.experiments.jobs import PAPER_PARTS, PLAN_PARTS, upstream_runs

    assert PAPER_PARTS == ("headline", "supplementary") and PLAN_PARTS == (*PAPER_PARTS, "study")
    for profile in ("smoke", "cpu"):
        every = plan(profile)
        parts = {p: plan(profile, p) for p in PLAN_PARTS}
        assert [j.run_dir for j in every] == [j.run_dir for j in every if j in sum(parts.values(), [])]
        assert len(every) == sum(map(len, parts.values())) and all(j.part in PLAN_PARTS for j in every)
        head = {j.run_dir for j in parts["headline"]}
        paper = head | {j.run_dir for j in parts["supplementary"]}
        for job in parts["headline"]:  # runs on its own: reads headline runs only
            assert {Path(r) for r in upstream_runs(job)} <= head, job.run_dir
        for job in parts["supplementary"]:  # reads its own or headline runs
            assert {Path(r) for r in upstream_runs(job)} <= paper
        for job in parts["study"]:  # no paper job reads a study run, and a study run reads no other run
            assert not upstream_runs(job)
        assert not {Path(r) for j in every if j.part != "study" for r in upstream_runs(j)} & {
            j.run_dir for j in parts["study"]
        }
        headline_nbs = {j.notebook for j in parts["headline"]}
        assert headline_nbs == {"01_data", "02_train", "04_ensembles"}
        # the explain step and the ensembles choose among the headline's CNN runs: standard and all modules
        # over every seed, each module alone, and each further backbone (standard) over every seed at its
        # native input size
        rq1 = [j.run_dir for j in parts["headline"] if j.notebook == "02_train"]
        cfg = load_config(profile)
        r = cfg.reproduce
        assert len(rq1) == (2 + len(r.backbones)) * len(r.seeds) + (3 if r.ablations else 0)
        for other in r.backbones:
            jobs = [j for j in parts["headline"] if j.params.get("backbone") == other]
            assert [j.params["seed"] for j in jobs] == list(r.seeds) and all(not j.params["modules"] for j in jobs)
            native = get_spec(other).native_size
            assert all(j.params["overrides"] == {"data.image_size": native} for j in jobs)
        for job in every:  # (the explain step's seed replicates explain one run each)
            if job.notebook == "04_ensembles" or (job.notebook == "03_explain" and job.run_dir.name == "explain"):
                chosen = job.params.get("candidate_runs", job.params.get("member_runs"))
                assert [Path(r) for r in chosen] == rq1
        # the localisation ablation: the standard variant with each other head pooling, trained before the
        # localisation step, which scores them against the standard run of the same seed; the explain step
        # reads none of them (a change to it retrains nothing of the ablation)
        pooled = [j for j in every if "@pool-" in str(j.run_dir)]
        want = ["gap", *r.poolings] if r.poolings else []  # the standard head trained again beside the others
        assert [j.params["overrides"] for j in pooled] == [{"model.pooling": p} for p in want]
        (explain,) = [j for j in every if j.notebook == "03_explain" and j.run_dir.name == "explain"]
        localisation = [j for j in every if j.notebook == "03_localisation"]
        assert "ablation_runs" not in explain.params
        assert not set(map(str, (j.run_dir for j in pooled))) & set(upstream_runs(explain))
        if pooled:
            (loc,) = localisation
            assert loc.part == "supplementary" and all(every.index(j) < every.index(loc) for j in pooled)
            assert loc.params["ablation_runs"] == [str(j.run_dir) for j in pooled]
            assert not set(loc.params["ablation_runs"]) & {str(p) for p in rq1}  # no headline run retrained
            assert set(loc.params["ablation_runs"]) == set(upstream_runs(loc))
        else:
            assert not localisation
    assert (
        len([j for j in plan("cpu") if "@pool-" in str(j.run_dir)]) == 3 and not load_config("smoke").reproduce.poolings
    )
    assert load_config("cpu").reproduce.backbones == ("efficientnet_lite1", "efficientnet_lite2")
    inverted = [j for j in plan("cpu") if "@invert" in str(j.run_dir)]  # the sequence-shortcut ablation, every seed
    assert [j.params["seed"] for j in inverted] == list(load_config("cpu").reproduce.seeds)
    assert all(j.params["overrides"] == {"augment.invert": 0.5} and j.part == "supplementary" for j in inverted)
    assert not load_config("smoke").reproduce.inversion
    # the lesion study: the published single model's recipe (Lite1, 240 px, seed 43) with each study recipe
    study = [j for j in plan("cpu") if "@cf" in str(j.run_dir) or "@gin" in str(j.run_dir)]
    rep = load_config("cpu").reproduce
    at_every_seed = set(rep.counterfactual_seeds)  # the recipes trained at every seed, the others at seed 43
    assert len(study) == len(rep.counterfactual) + (len(rep.seeds) - 1) * len(at_every_seed)
    assert not plan_has_study("smoke")
    tag = lambda j: j.run_dir.parent.name.split("@")[1]  # noqa: E731
    assert all(j.params["backbone"] == "efficientnet_lite1" for j in study)
    assert all(j.params["seed"] == 43 for j in study if tag(j) not in at_every_seed)
    assert {j.params["seed"] for j in study if tag(j) in at_every_seed} == set(rep.seeds)
    assert all(j.params["overrides"]["data.image_size"] == 240 and j.part == "study" for j in study)
    assert study == plan("cpu", "study")
    cpu_sup = {j.notebook for j in plan("cpu", "supplementary")}
    assert cpu_sup == {"02_train", "02_vit", "03_explain", "03_localisation", "05_robustness"}
    with pytest.raises(ValueError, match="part='rest'"):
        plan("cpu", "rest")


def test_the_supplementary_part_waits_for_the_headline_runs_it_reads(tmp_path, monkeypatch):
    from tumorlens.experiments import runner

    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TUMORLENS_RESULTS", str(tmp_path / "results"))  # no published smoke copies to resume from
    called = []
    monkeypatch.setattr(runner, "run_jobs", lambda jobs, **kw: called.append(jobs) or [(j, "ran") for j in jobs])
    with pytest.raises(ValueError, match=r"not complete and current: .*seed-42.*--part headline` first"):
        runner.run_profile("smoke", part="supplementary", collect_results=False, show_progress=False)
    assert not called  # refused before anything ran
    done = runner.run_profile("smoke", part="headline", collect_results=False, show_progress=False)
    assert {j.part for j, _ in done} == {"headline"}


STAMP = """# %% tags=["parameters"]
profile = "smoke"
out = ""
model_run = ""

# %%
from pathlib import Path
Path(out).write_text(Path(out).read_text() + "x" if Path(out).is_file() else "x")
"""


def test_a_changed_setting_reruns_exactly_the_jobs_that_read_it_and_says_why(tmp_path, monkeypatch, capsys):
    """Training reads `train`, the explain step `segment` and the model it explains; the runner reruns
    a job whose settings, notebook, parameters or upstream run changed since it completed."""
    from tumorlens.experiments.jobs import stale_reasons

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("02_train", "03_explain"):
        (nbs / f"{name}.py").write_text(STAMP)
    config = tmp_path / "_config.yml"
    original = (Path(__file__).resolve().parents[1] / "_config.yml").read_text()
    config.write_text(original)
    monkeypatch.setenv("TUMORLENS_CONFIG", str(config))
    train = Job("02_train", tmp_path / "train", {"profile": "smoke", "out": str(tmp_path / "train.txt")})
    explain = Job(
        "03_explain",
        tmp_path / "explain",
        {"profile": "smoke", "out": str(tmp_path / "explain.txt"), "model_run": str(train.run_dir)},
    )

    def run_all():
        return [execute(j, notebooks=nbs) for j in (train, explain)]

    assert run_all() == ["ran", "ran"] and run_all() == ["skipped", "skipped"]
    assert stale_reasons(train, nbs) == [] == stale_reasons(explain, nbs)

    config.write_text(original.replace("iterations: 5", "iterations: 4", 1))  # segment: the explain step only
    assert stale_reasons(train, nbs) == [] and stale_reasons(explain, nbs) == ["settings changed (in segment)"]
    assert run_all() == ["skipped", "ran"]
    assert "rerunning" in capsys.readouterr().err

    changed = original.replace("iterations: 5", "iterations: 4", 1)
    config.write_text(changed.replace("finetune_lr: 0.0001", "finetune_lr: 0.0002", 1))  # train
    assert stale_reasons(train, nbs) == ["settings changed (in train)"]
    # the explain step reads train too (the classifier's recipe; declared in tumorlens.experiments.steps)
    assert stale_reasons(explain, nbs) == ["settings changed (in train)"]
    assert run_all() == ["ran", "ran"]
    assert (tmp_path / "train.txt").read_text() == "xx" and (tmp_path / "explain.txt").read_text() == "xxx"

    (nbs / "03_explain.py").write_text(STAMP + "\n# an edit\n")
    assert stale_reasons(explain, nbs) == ["notebooks/03_explain.py changed"]
    assert run_all() == ["skipped", "ran"]
    assert execute(train, notebooks=nbs, force=True) == "ran"  # --force still forces
    assert stale_reasons(explain, nbs) == [f"{train.run_dir} was run again"]

    # a setting added later (`model.pooling`, marked added) at its default leaves what ran before it current
    now = config.read_text()
    assert "    pooling: gap " in now
    config.write_text(now.replace("    pooling: gap ", "    # pooling: gap ", 1))  # as before the setting existed
    assert stale_reasons(train, nbs) == []
    config.write_text(now.replace("    pooling: gap ", "    pooling: lse ", 1))  # any other value is a change
    assert stale_reasons(train, nbs) == ["settings changed (in model)"]
    # a record from before the sections were hashed one by one names every section the job reads
    done = json.loads((train.run_dir / ".done.json").read_text())
    del done["inputs"]["settings_by_section"]
    (train.run_dir / ".done.json").write_text(json.dumps(done))
    assert stale_reasons(train, nbs) == ["settings changed (in data, audit, augment, model, train)"]


def test_a_run_of_every_job_records_its_wall_time_and_collect_reports_it(tmp_path, monkeypatch):
    """`run_profile` writes runs/<p>/end_to_end.json only when one invocation ran every job; collect puts
    it in reproduction.json with the jobs rerun after it, and the book says it in words."""
    import os
    import time

    from tumorlens.book.pages import end_to_end_words
    from tumorlens.config import load_config
    from tumorlens.experiments import collect as collect_mod
    from tumorlens.experiments import runner
    from tumorlens.records import END_TO_END, end_to_end_file
    from tumorlens.utils.files import read_json

    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TUMORLENS_RESULTS", str(tmp_path / "results"))  # collect writes there, not into results/
    root = load_config("smoke").runs_root
    statuses = {"value": "ran"}

    def fake_run_jobs(jobs, **kw):
        time.sleep(0.05)
        return [(j, statuses["value"]) for j in jobs]

    monkeypatch.setattr(runner, "run_jobs", fake_run_jobs)
    statuses["value"] = "skipped"  # a resumed run: no end-to-end time
    runner.run_profile("smoke", collect_results=False, show_progress=False)
    assert not (root / END_TO_END).exists()
    runner.run_profile("smoke", only=["02_train"], collect_results=False, show_progress=False)
    assert not (root / END_TO_END).exists()  # part of the profile only
    statuses["value"] = "ran"
    runner.run_profile("smoke", collect_results=False, show_progress=False, workers=2)
    rec = read_json(root / END_TO_END, schema="end_to_end")
    assert rec["profile"] == "smoke" and rec["jobs"] == len(plan("smoke")) and rec["workers"] == 2
    assert 0 < rec["seconds"] < 60 and rec["minutes"] == round(rec["seconds"] / 60, 1)

    done = root / "explain" / ".done.json"  # a job completed after the recorded run
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    later = (root / END_TO_END).stat().st_mtime + 5
    os.utime(done, (later, later))
    timing = collect_mod._end_to_end(root, None)
    assert timing["end_to_end_minutes"] == rec["minutes"]
    assert timing["end_to_end"]["jobs_rerun_since"] == ["explain"]
    words = end_to_end_words({"total_minutes": 3.0, **timing})
    assert f"all {rec['jobs']} jobs" in words and "2 workers" in words and "1 job was rerun after it (explain)" in words
    assert "no uninterrupted run" in end_to_end_words({"total_minutes": 3.0, "jobs": []})

    # the parts, each in its own uninterrupted run: each records its own time; the headline's is the one
    # the target is about, and a part's rerun jobs are its own only
    runner.run_profile("smoke", part="headline", collect_results=False, show_progress=False, workers=2)
    time.sleep(0.01)
    monkeypatch.setattr(runner, "job_state", lambda job, **kw: ("current", []))  # the fake headline counts as complete
    runner.run_profile("smoke", part="supplementary", collect_results=False, show_progress=False)
    head = read_json(root / end_to_end_file("headline"), schema="end_to_end")
    sup = read_json(root / end_to_end_file("supplementary"), schema="end_to_end")
    assert (head["part"], head["jobs"]) == ("headline", len(plan("smoke", "headline")))
    assert (sup["part"], sup["jobs"], sup["workers"]) == ("supplementary", len(plan("smoke", "supplementary")), 1)
    vit_done = root / "vit" / "seed-42" / ".done.json"  # a supplementary job completed after both runs
    vit_done.parent.mkdir(parents=True)
    vit_done.write_text("{}")
    later = (root / end_to_end_file("supplementary")).stat().st_mtime + 5
    os.utime(vit_done, (later, later))
    timing = collect_mod._end_to_end(root, None, "smoke")
    assert timing["end_to_end"]["part"] == "headline" and timing["end_to_end_minutes"] == head["minutes"]
    assert set(timing["end_to_end_parts"]) == {"all", "headline", "supplementary"}
    assert timing["end_to_end_parts"]["headline"]["jobs_rerun_since"] == []
    assert timing["end_to_end_parts"]["supplementary"]["jobs_rerun_since"] == ["explain", "vit/seed-42"]
    words = end_to_end_words({"total_minutes": 3.0, **timing})
    assert f"the headline part ran its {head['jobs']} jobs" in words
    assert f"the supplementary part ran its {sup['jobs']} jobs" in words and "1 worker of" in words

    # make reproduce: both paper parts in one invocation -- each part's record, and the whole as full_run
    from tumorlens.book.pages import full_run_words
    from tumorlens.records import FULL_RUN

    assert "not yet measured" in full_run_words({"part_minutes": {"headline": 50.0, "supplementary": 40.0}})
    with pytest.raises(ValueError, match="part="):
        runner.run_profile("smoke", part=["headline", "rest"], collect_results=False, show_progress=False)
    vit_done.unlink(), done.unlink()  # (stamped in the future above)
    runner.run_profile("smoke", part=["headline", "supplementary"], collect_results=False, show_progress=False)
    full = read_json(root / FULL_RUN, schema="full_run")
    assert full["parts"] == ["headline", "supplementary"] and full["jobs"] == len(plan("smoke", "headline")) + len(
        plan("smoke", "supplementary")
    )
    assert full["commit"] and full["started"] and 0 < full["seconds"] < 60
    assert read_json(root / end_to_end_file("headline"), schema="end_to_end")["jobs"] == len(plan("smoke", "headline"))
    timing = collect_mod._end_to_end(root, None, "smoke")
    assert timing["full_run"]["minutes"] == full["minutes"] and timing["full_run"]["jobs_rerun_since"] == []
    assert "one uninterrupted make reproduce ran the headline and supplementary parts" in full_run_words(timing)
    statuses["value"] = "skipped"  # a job that did not run: no full run is recorded
    (root / FULL_RUN).unlink()
    runner.run_profile("smoke", part=["headline", "supplementary"], collect_results=False, show_progress=False)
    assert not (root / FULL_RUN).exists()


def test_the_explain_step_is_replicated_on_its_chosen_recipe_once_it_has_chosen(tmp_path, monkeypatch):
    """``reproduce.explain_seeds``: after the explain step has chosen a classifier, `tumorlens run` plans
    the explain step again for that recipe's other seeds (and runs them in the same invocation)."""
    from tumorlens.experiments import runner
    from tumorlens.experiments.jobs import DONE, EXPLAIN_SEEDS

    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TUMORLENS_RESULTS", str(tmp_path / "results"))  # nothing published either
    root = load_config("cpu").runs_root
    assert load_config("cpu").reproduce.explain_seeds and not load_config("smoke").reproduce.explain_seeds
    assert not [j for j in plan("cpu") if EXPLAIN_SEEDS in str(j.run_dir)]  # nothing chosen yet
    chosen = root / "efficientnet_lite1" / "seed-43"
    batches = []

    def fake_run_jobs(jobs, **kw):
        batches.append(jobs)
        for j in jobs:
            j.run_dir.mkdir(parents=True, exist_ok=True)
            (j.run_dir / DONE).write_text("{}")
            j.output.write_text("{}")
            if j.run_dir == root / "explain":
                (j.run_dir / "summary.json").write_text(json.dumps({"model": str(chosen)}))
        return [(j, "ran") for j in jobs]

    monkeypatch.setattr(runner, "run_jobs", fake_run_jobs)
    runner.run_profile("cpu", collect_results=False, show_progress=False)
    assert len(batches) == 2  # the plan, then the replicates it grew once the explain step had chosen
    again = batches[1]
    assert [j.run_dir for j in again] == [root / EXPLAIN_SEEDS / "seed-42", root / EXPLAIN_SEEDS / "seed-44"]
    assert [j.params["model_run"] for j in again] == [str(chosen.parent / f"seed-{s}") for s in (42, 44)]
    assert {j.notebook for j in again} == {"03_explain"} and not any("ablation_runs" in j.params for j in again)
    assert [j.run_dir for j in plan("cpu") if EXPLAIN_SEEDS in str(j.run_dir)] == [j.run_dir for j in again]


def test_collect_files_each_timed_job_under_the_part_it_is_in_now():
    """A job timed when the lesion study was still supplementary counts in the study part today."""
    from tumorlens.experiments.collect import _current_parts, _totals

    jobs = [
        {"job": "cpu/efficientnet_lite1@cf/seed-43", "notebook": "02_train", "seconds": 600.0, "part": "supplementary"},
        {"job": "cpu/explain", "notebook": "03_explain", "seconds": 120.0, "part": "supplementary"},
        {"job": "elsewhere/x", "notebook": "02_train", "seconds": 60.0, "part": "headline"},
    ]
    t = _totals(_current_parts(jobs, "cpu"))
    assert [j["part"] for j in t["jobs"]] == ["study", "supplementary", "headline"]
    assert t["part_minutes"] == {"headline": 1.0, "supplementary": 2.0, "study": 10.0}


def test_resume_retrains_a_run_whose_weights_one_job_loads_even_when_another_only_reads_it(tmp_path, monkeypatch):
    """Two jobs to run read the same published training run: one loads its weights (unpublished), the other
    only its records. The run is retrained before them and never restored without weights; a run restored
    earlier without weights (its folder complete but for the model) is retrained too."""
    from tumorlens.experiments import runner
    from tumorlens.experiments.jobs import DONE

    up = Job("02_train", tmp_path / "up", {"profile": "smoke", "run_dir": str(tmp_path / "up")})
    loads = Job("03_localisation", tmp_path / "loc", {"profile": "smoke", "ablation_runs": [str(up.run_dir)]})
    reads = Job("04_ensembles", tmp_path / "ens", {"profile": "smoke", "member_runs": [str(up.run_dir)]})
    every = [up, loads, reads]
    states = {up.run_dir.resolve(): "published", loads.run_dir.resolve(): "to run", reads.run_dir.resolve(): "to run"}
    restored = []
    monkeypatch.setattr(runner, "plan", lambda profile, part=None: every)
    monkeypatch.setattr(runner, "job_state", lambda job, **kw: (states[job.run_dir.resolve()], []))
    monkeypatch.setattr(runner, "published_weights", lambda profile: set())
    monkeypatch.setattr(runner, "_needs_weights", lambda job, p: {up.run_dir.resolve()} if job is loads else set())
    monkeypatch.setattr(runner, "restore_job", lambda job, p, weights: restored.append((job.run_dir, weights)))
    runnable, kept = runner.resume("smoke", [loads, reads])
    assert runnable == [up, loads, reads] and not kept and not restored
    # a folder restored before without its weights (complete, current): its record goes and it is retrained
    up.run_dir.mkdir()
    (up.run_dir / DONE).write_text("{}")
    up.output.write_text("{}")
    states[up.run_dir.resolve()] = "current"
    runnable, _ = runner.resume("smoke", [loads, reads])
    assert runnable == [up, loads, reads] and not (up.run_dir / DONE).exists() and not restored
