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
    for cell in nb.cells:  # readers see results first; the code stays one click away
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
    if title:
        for cell in nb.cells:
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
                first, _, rest = cell.source.lstrip().partition("\n")
                cell.source = f"# {title}\n{rest}"
                break
    nbformat.write(nb, dest)


def build_book(profile: str = "smoke", *, strict: bool = False, run: bool | None = None) -> Path:
    """Build the book of ``profile`` from ``results/<profile>/``; returns ``_build/html/index.html``.

    ``run``: execute the profile's experiments first (resumable) and collect their results. By
    default the smoke profile runs (minutes) and the others are rendered from their published
    results; with no results at all, the experiments run.
    """
    from tumorlens.results import results_dir
    from tumorlens.runner import book_pages, execute

    cfg = load_config(profile)
    res = results_dir(profile)
    if run is None:
        run = cfg.data.source == "phantoms" or not (res / "summary.json").is_file()
    if run:
        run_profile(profile)
    if not (res / "summary.json").is_file():
        raise FileNotFoundError(f"no results for profile {profile!r} in {res}: run `tumorlens run --profile {profile}`")
    book = book_dir()
    gen = book / "generated"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    rel_res = res.relative_to(paths.repo_root()) if res.is_relative_to(paths.repo_root()) else res
    for job in book_pages(profile, rel_res, gen):
        execute(job, force=True)
        _copy_page(job.output, gen / f"{job.page}.ipynb", job.title)
    shutil.rmtree(gen / ".jobs", ignore_errors=True)
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
