import json

import pytest

from tumorlens.errors import NotebookFailed
from tumorlens.experiments.runner import Job, execute, plan

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
