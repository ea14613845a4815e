"""The GitHub workflows lint clean here (schema check, offline), so a typo fails in the tests, not on the host."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def _lint(*files) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "check-jsonschema"
    if not exe.exists():
        pytest.fail("check-jsonschema is not installed: `pip install -e '.[dev]'`")
    cmd = [str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True)


def _load(name: str) -> dict:
    d = yaml.safe_load((WORKFLOWS / name).read_text())
    d["on"] = d.pop(True, d.get("on"))  # YAML 1.1 reads the key `on` as true
    return d


def _runs(job: dict) -> list[str]:
    return [s.get("run", "") for s in job["steps"]]


def _uses(job: dict) -> list[str]:
    return [s.get("uses", "").split("@")[0] for s in job["steps"]]


def test_the_workflows_match_the_github_workflow_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["book.yml", "ci.yml"]
    r = _lint(*files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_typo_in_a_workflow_fails_the_lint(tmp_path):
    broken = (WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "run-on:")
    (tmp_path / "ci.yml").write_text(broken)
    r = _lint(tmp_path / "ci.yml")
    assert r.returncode != 0 and "runs-on" in r.stdout + r.stderr


def test_the_book_workflow_builds_with_make_book_and_deploys_to_pages():
    wf = _load("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in wf["on"]
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    assert wf["concurrency"]["group"]
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert "make install" in _runs(build) and "make book" in _runs(build)  # the README's commands
    runs = _runs(build)  # the full test tier (make test-full) passes before the book is published
    assert "make test-full" in runs and runs.index("make test-full") < runs.index("make book")
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "book/_build/html"
    assert deploy["needs"] == "build" and "actions/deploy-pages" in _uses(deploy)
    assert deploy["environment"]["name"] == "github-pages"


def test_the_ci_workflow_runs_the_projects_ci_script():
    wf = _load("ci.yml")
    assert "pull_request" in wf["on"] and wf["on"]["push"]["branches"] == ["main"]
    assert _runs(wf["jobs"]["test"])[-1] == "bash .ci/run"
