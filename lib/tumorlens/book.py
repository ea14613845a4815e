"""Build the Jupyter Book: run a profile's notebooks, gather the executed ones, build the HTML.

The executed notebooks are copied into ``book/generated/`` (not committed) next to the committed
narrative pages; the book itself never executes anything (``execute_notebooks: off``). A page
``generated/build_info.md`` says which profile and data produced the numbers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tumorlens import paths
from tumorlens.config import load_config
from tumorlens.runner import run_profile

__all__ = ["book_dir", "build_book"]


def book_dir() -> Path:
    return paths.repo_root() / "book"


def _build_info(profile: str) -> str:
    cfg = load_config(profile)
    if cfg.data.source == "phantoms":
        return ("```{warning}\nThis build of the book uses the **smoke** profile: every number and figure comes "
                "from the embedded **synthetic phantoms**, not from MRI scans, with tiny models trained for one "
                "epoch per phase. It shows that the pipeline runs end to end; it says nothing about tumour "
                "classification. See the README for the real-data profiles.\n```\n")
    return (f"```{{note}}\nThis build of the book uses the **{profile}** profile on the dataset at "
            f"`{cfg.data_root}`.\n```\n")


def _copy_page(src: Path, dest: Path, title: str | None) -> None:
    """Copy an executed notebook into the book, retitled when ``title`` is given."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    if title:
        for cell in nb.cells:
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
                first, _, rest = cell.source.lstrip().partition("\n")
                cell.source = f"# {title}\n{rest}"
                break
    nbformat.write(nb, dest)


def build_book(profile: str = "smoke", *, strict: bool = False, run: bool = True) -> Path:
    """Run the profile's notebooks (resumable), then ``jupyter-book build book/``; returns index.html."""
    book = book_dir()
    jobs = run_profile(profile) if run else []
    gen = book / "generated"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    for job, _ in jobs:
        if job.page:
            _copy_page(job.output, gen / f"{job.page}.ipynb", job.title)
    (gen / "build_info.md").write_text(_build_info(profile))
    import plotly

    static = book / "_static"
    static.mkdir(exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return book / "_build" / "html" / "index.html"
