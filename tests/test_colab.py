"""The Colab walkthrough is executed the way a Colab runtime runs it: in a kernel of a Python that does not
have tumorlens, the notebook clones the repository (a local bare clone of this checkout's HEAD, so no
network), installs it with pip and imports it in the same kernel, then runs on the smoke profile.

Offline by construction: pip gets ``--no-index`` (``PIP_NO_INDEX``, no machine pip config) and builds
without an isolated build environment (``PIP_NO_BUILD_ISOLATION``), so the dependencies must already be
installed -- they are this test environment's own packages, which the fresh interpreter sees through a
``.pth`` file (not tumorlens: the development install is editable, and its path hook is not read from
there). The Kaggle download (kagglehub) is not exercised: the smoke profile uses the embedded phantoms,
and the notebook stops with a message naming ``DATA_ROOT`` when kagglehub cannot download. The GPU cell
runs and reports "none" on a machine without one. Note: what is tested is the committed HEAD, not
uncommitted changes of the working tree.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import pytest

from tumorlens.config import CLASSES

REPO = Path(__file__).resolve().parents[1]


def _fresh_python(tmp_path: Path) -> Path:
    """A venv without tumorlens whose interpreter also sees this environment's site-packages (a .pth file)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py


def _kernel(tmp_path: Path, python: Path) -> Path:
    """A Jupyter kernel spec ``colab-test`` running ``python`` (found through ``JUPYTER_PATH``)."""
    spec = tmp_path / "jupyter" / "kernels" / "colab-test"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "colab test", "language": "python"}))
    return tmp_path / "jupyter"


#: pip offline, from this environment's packages (see the module docstring)
OFFLINE_PIP = {
    "PIP_NO_INDEX": "1",
    "PIP_NO_BUILD_ISOLATION": "0",  # pip reads 0 as "turn build isolation off"
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}

needs_git = pytest.mark.skipif(
    subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0,
    reason="not a git checkout: nothing to clone",
)


def _fresh_runtime(tmp_path: Path) -> tuple[Path, str, Path, Path]:
    """A bare clone of HEAD (the notebook's ``REPO``), HEAD's commit, a fresh Python that cannot import
    tumorlens (as on a new Colab runtime) and Colab's working folder, where the notebook clones."""
    bare = tmp_path / "tumorlens.git"
    subprocess.run(["git", "clone", "--bare", "--quiet", str(REPO), str(bare)], check=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    python = _fresh_python(tmp_path)
    before = subprocess.run([str(python), "-c", "import tumorlens"], capture_output=True, text=True)
    assert before.returncode != 0 and "No module named 'tumorlens'" in before.stderr  # as on a fresh runtime
    work = tmp_path / "content"  # Colab's working folder: the clone goes here
    work.mkdir()
    return bare, head, python, work


def _head_of(clone: Path) -> str:
    return subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout


@needs_git
def test_the_walkthroughs_install_cell_clones_installs_and_imports_in_one_python(tmp_path):
    """The fast tier's part of the walkthrough test below: the notebook's own parameters and install cells,
    run in one fresh Python (a kernel's process), clone HEAD, install it with pip (not editable) and import
    it from the fresh install in that same process."""
    import nbformat

    cells = nbformat.read(REPO / "notebooks" / "colab_walkthrough.ipynb", as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    k = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    params, install = code[k].source, code[k + 1].source
    assert "pip" in install and "import tumorlens" in install  # the install cell, right after the parameters
    bare, head, python, work = _fresh_runtime(tmp_path)
    script = f"{params}\nREPO = {str(bare)!r}\n{install}"
    r = subprocess.run(
        [str(python), "-c", script], cwd=work, env={**os.environ, **OFFLINE_PIP}, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert _head_of(work / "tumorlens") == head
    installed = next(line for line in r.stdout.splitlines() if line.startswith("tumorlens "))
    assert str(python.parent.parent) in installed and str(REPO) not in installed  # the fresh install, same process


@needs_git
@pytest.mark.full
def test_the_colab_walkthrough_clones_installs_and_imports_in_one_kernel_then_runs(tmp_path):
    """The whole walkthrough on the smoke profile, in a kernel of the fresh Python. Fast counterparts:
    test_the_walkthroughs_install_cell_clones_installs_and_imports_in_one_python (its install cell), and for
    the commands it runs test_published.py::test_predict_without_model_uses_the_published_one (predict
    --segment with the published model), test_train.py::test_smoke_run_writes_a_complete_run_directory
    (train on the smoke profile), test_data.py::test_cli_scan_json_on_fuzzed_folder (data scan) and
    test_fuzz.py::test_fuzzed_names_pixels_and_dicom_tags_get_one_row_each_inside_out (predict --model
    --segment)."""
    import papermill as pm

    bare, head, python, work = _fresh_runtime(tmp_path)
    out = tmp_path / "colab"
    env = {"JUPYTER_PATH": str(_kernel(tmp_path, python)), **OFFLINE_PIP}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(
            str(REPO / "notebooks" / "colab_walkthrough.ipynb"),
            str(tmp_path / "executed.ipynb"),
            parameters={"PROFILE": "smoke", "REPO": str(bare), "DATA_ROOT": "", "OUT": str(out), "N_SCANS": 2},
            kernel_name="colab-test",
            cwd=str(work),
            progress_bar=False,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert _head_of(work / "tumorlens") == head
    import nbformat

    cells = nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells
    text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    site = str(Path(python).parent.parent)
    installed = next(line for line in text.splitlines() if line.startswith("tumorlens "))
    assert site in installed and str(REPO) not in installed  # imported from the fresh install, same kernel
    assert "GPU:" in text and "published single model:" in text
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert 0.0 <= metrics["official"]["accuracy"] <= 1.0
    assert (out / "audit" / "audit.json").is_file()
    records = sorted((out / "predictions").glob("*.json"))
    assert len(records) == 2
    for rec in records:
        d = json.loads(rec.read_text())
        assert d["class"] in CLASSES and abs(sum(d["probabilities"].values()) - 1) < 1e-4
        overlay = cv2.imread(str(rec.with_name(rec.stem + "_cam.png")))
        mask = cv2.imread(str(rec.with_name(rec.stem + "_mask.png")), cv2.IMREAD_GRAYSCALE)
        assert overlay is not None and overlay.ndim == 3 and mask is not None and set(mask.ravel()) <= {0, 255}
    first = sorted((out / "published").glob("*.json"))  # the published model came first, without training
    assert len(first) == 2 and all(json.loads(r.read_text())["model"].startswith("published:") for r in first)
    shown = [o for c in cells for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in shown) == 2 + 4  # published mask; map and mask per scan


def test_the_walkthrough_names_the_published_model_of_models_json():
    single = json.loads((REPO / "models" / "cpu" / "models.json").read_text())["single"]
    for f in ("notebooks/colab_walkthrough.py", "README.md"):
        assert single in (REPO / f).read_text(), f"{f} does not name the published model {single}"
