"""Build the Jupyter Book: run a profile's notebooks, gather the executed ones, build the HTML.

The executed notebooks are copied into ``book/generated/`` (not committed) next to the committed
narrative pages; the book itself never executes anything (``execute_notebooks: off``). A page
``generated/build_info.md`` says which profile and data produced the numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tumorlens import paths
from tumorlens.book.tables import provenance
from tumorlens.config import load_config
from tumorlens.experiments.collect import check_results, results_dir
from tumorlens.experiments.grid import execute, run_jobs
from tumorlens.experiments.jobs import notebook_dir
from tumorlens.experiments.runner import book_pages, run_profile
from tumorlens.utils.files import read_json
from tumorlens.utils.quiet import is_tf_noise

__all__ = ["book_dir", "build_book", "copy_static", "remote_scripts", "machine_paths"]


def book_dir() -> Path:
    return paths.repo_root() / "book"


def _build_info(profile: str) -> str:
    cfg = load_config(profile)
    if cfg.data.source == "phantoms":
        return (
            "```{warning}\nThis build of the book uses the **smoke** profile: every number and figure comes "
            "from the embedded **synthetic phantoms**, not from MRI scans, with tiny models trained for one "
            "epoch per phase. It shows that the pipeline runs end to end; it says nothing about tumour "
            "classification. See the README for the real-data profiles.\n```\n"
        )
    summary = paths.repo_root() / "results" / profile / "summary.json"
    if summary.is_file():
        s = read_json(summary, schema="summary")
        git = s.get("environment", {}).get("git", {})
        return (
            f"```{{note}}\nThis build of the book shows the **{profile}** profile's results from "
            f"`results/{profile}/`: {s['data']}, {s['image_size']} px, run on "
            f"{s.get('environment', {}).get('cpus', '?')} CPU cores (collected at commit "
            f"`{(git.get('commit') or 'unknown')[:10]}`).\n```\n"
        )
    return (
        f"```{{note}}\nThis build of the book uses the **{profile}** profile on the dataset at "
        f"`{cfg.data_root}`.\n```\n"
    )


def _drop_tf_noise(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(line for line in out["text"].splitlines(keepends=True) if not is_tf_noise(line))
                if not text.strip():
                    continue
                out["text"] = text
            kept.append(out)
        cell["outputs"] = kept


#: The cell every book page runs right after its parameters (and the book never shows): the page's
#: display -- Plotly figures without CDN scripts, tables without index or NaN (`tumorlens.book.tables.Table`)
#: -- whatever the notebook itself sets up, so the experiment notebooks need no book-only code.
PAGE_SETUP = "from tumorlens.book import figures as _f, tables as _t\n\n_f.setup_plotly()\n_t.setup_display()"


def page_sources(pages, out: Path) -> Path:
    """Copies of the pages' notebooks (``notebooks/<name>.py``) in ``out``, each with `PAGE_SETUP` as a
    hidden cell right after its parameters cell; returns ``out`` (the ``notebooks`` folder to execute from)."""
    import jupytext
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    for name in sorted({job.notebook for job in pages}):
        nb = jupytext.read(notebook_dir() / f"{name}.py")
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), -1)
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(PAGE_SETUP, metadata={"tags": ["remove-cell"]}))
        jupytext.write(nb, out / f"{name}.py", fmt="py:percent")
    return out


def _collapse_json(cell) -> None:
    """A printed JSON object in a cell's output (a run's summary, a settings dump) becomes a collapsed
    provenance table: no raw JSON on a page."""
    import json

    import nbformat

    kept = []
    for out in cell.get("outputs", []):
        text = out.get("text", "") if out.get("output_type") == "stream" and out.get("name") == "stdout" else ""
        body = text.strip()
        if body.startswith("{") and body.endswith("}"):
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                html = provenance(data, title="Details (from the results files)")._repr_html_()
                out = nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": body})
        kept.append(out)
    cell["outputs"] = kept


#: One spelling of the class in the book's prose: "no tumour" (the files say ``notumor``).
_PROSE = ((re.compile(r"\bno-tumour\b"), "no tumour"), (re.compile(r"\bNo-tumour\b"), "No tumour"))


def normalise_prose(text: str) -> str:
    """The book's spelling of the class names in ``text`` (``no-tumour`` -> ``no tumour``)."""
    for rx, word in _PROSE:
        text = rx.sub(word, text)
    return text


def _normalise_cell(cell) -> None:
    """`normalise_prose` on what a reader sees of a cell: markdown, printed text, tables and glued values."""
    if cell.cell_type == "markdown":
        cell.source = normalise_prose(cell.source)
        return
    for out in cell.get("outputs", []):
        if "text" in out:
            out["text"] = normalise_prose(out["text"])
        for mime in ("text/plain", "text/html", "text/markdown"):
            if isinstance(out.get("data", {}).get(mime), str):
                out["data"][mime] = normalise_prose(out["data"][mime])


def _copy_page(src: Path, dest: Path, title: str | None) -> None:
    """Copy an executed notebook into the book, retitled when ``title`` is given."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    _drop_tf_noise(nb)
    pm = nb.metadata.get("papermill") or {}
    for key in ("input_path", "output_path"):  # where the page ran, on the machine that built it: not for readers
        if pm.get(key):
            pm[key] = Path(pm[key]).name
    for cell in nb.cells:
        if cell.cell_type == "code":
            _collapse_json(cell)
        _normalise_cell(cell)
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


def build_book(
    profile: str = "smoke", *, strict: bool = False, run: bool | None = None, workers: int | None = None
) -> Path:
    """Build the book of ``profile`` from ``results/<profile>/``; returns ``_build/html/index.html``.

    ``run``: execute the profile's experiments first (resumable) and collect their results. By
    default the smoke profile runs (minutes) and the others are rendered from their published
    results; with no results at all, the experiments run. ``workers``: run the experiments and the
    report pages on that many local Dask workers (`tumorlens.experiments.grid`).
    """

    cfg = load_config(profile)
    res = results_dir(profile)
    if run is None:
        run = cfg.data.source == "phantoms" or not (res / "summary.json").is_file()
    if run:
        run_profile(profile, workers=workers)
    if not (res / "summary.json").is_file():
        raise FileNotFoundError(f"no results for profile {profile!r} in {res}: run `tumorlens run --profile {profile}`")
    problems = check_results(res)
    if problems:
        message = f"the results in {paths.relative(res)} cannot be read fully:\n  " + "\n  ".join(problems)
        if strict:
            raise RuntimeError(message)
        print(f"warning: {message}", file=sys.stderr)
    book = book_dir()
    gen = book / "generated"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    rel_res = res.relative_to(paths.repo_root()) if res.is_relative_to(paths.repo_root()) else res
    pages = book_pages(profile, rel_res, gen)
    say(f"rendering {len(pages)} pages of the {profile} book from {paths.relative(res)}")
    sources = page_sources(pages, gen / ".src")
    if workers:  # independent of each other; the grid prints each page as it finishes
        run_jobs(pages, force=True, workers=workers, show_progress=False, notebooks=sources)
    else:
        for i, job in enumerate(pages, 1):
            t0 = time.perf_counter()
            say(f"page {i}/{len(pages)}: {job.page} ({job.notebook}.py) ...", end="")
            execute(job, force=True, notebooks=sources)
            say(f" {time.perf_counter() - t0:.0f} s; {len(pages) - i} left", prefix=False)
    shutil.rmtree(sources, ignore_errors=True)
    for job in pages:
        _copy_page(job.output, gen / f"{job.page}.ipynb", job.title)
    shutil.rmtree(gen / ".jobs", ignore_errors=True)
    (gen / "build_info.md").write_text(_build_info(profile))
    copy_static(book / "_static", book / "_extra", strict=strict)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(book), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    say("building the HTML (jupyter-book; Sphinx reports its own progress)")
    t0 = time.perf_counter()
    if subprocess.run(cmd).returncode != 0:
        raise RuntimeError("jupyter-book could not build the HTML (its warnings and errors are above)")
    say(f"HTML built in {time.perf_counter() - t0:.0f} s")
    remote = remote_scripts(book / "_build" / "html")
    if remote:
        listing = "; ".join(f"{page}: {src}" for page, src in remote[:5])
        message = f"the built pages load scripts from the network ({len(remote)} place(s)): {listing}"
        if strict:
            raise RuntimeError(message)
        print(f"warning: {message}", file=sys.stderr)
    found = machine_paths(book / "_build" / "html", cfg)
    if found:
        listing = "; ".join(f"{page}: ...{snippet}..." for page, snippet in found[:5])
        message = f"the built pages name folders of this machine ({len(found)} place(s)): {listing}"
        if strict:
            raise RuntimeError(message)
        print(f"warning: {message}", file=sys.stderr)
    return book / "_build" / "html" / "index.html"


def say(message: str, *, end: str = "\n", prefix: bool = True) -> None:
    """A progress line of the build on stderr, flushed at once (a build run without a terminal, e.g. in
    CI or ``make book > log``, shows where it is)."""
    print(f"book: {message}" if prefix else message, end=end, file=sys.stderr, flush=True)


#: MathJax 3 (the package ``django-static-mathjax`` ships its files): the combined TeX/MathML component
#: and what it loads at run time, copied into the book's ``_extra/mathjax/``, which the site publishes
#: at its root (``html_extra_path`` and ``mathjax_path`` in ``book/_config.yml``; not under ``_static/``,
#: whose every ``.js`` file Jupyter Book adds to every page).
MATHJAX_FILES = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "a11y", "sre")


def mathjax_source() -> Path | None:
    """The ``es5`` folder of the installed MathJax 3 copy; None when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(loc) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


def copy_static(static: Path, extra: Path, *, strict: bool = False) -> None:
    """Put the scripts the pages load into the book: Plotly's ``plotly.min.js`` (from the plotly package)
    into ``static`` and MathJax (`MATHJAX_FILES`) into ``extra/mathjax``, so that no page loads a script
    from the network."""
    import plotly

    static.mkdir(exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    es5 = mathjax_source()
    if es5 is None:
        message = "MathJax is not installed (pip install django-static-mathjax, or make install): formulas show as TeX"
        if strict:
            raise RuntimeError(message)
        print(f"warning: {message}", file=sys.stderr)
        return
    dest = extra / "mathjax"
    for rel in MATHJAX_FILES:
        src = es5 / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, dirs_exist_ok=True)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


_SCRIPT_SRC = re.compile(r"""<script[^>]*\bsrc=["']((?:https?:)?//[^"']+)["']""", re.I)
_IMPORT_URL = re.compile(r"""(?:import\(|require\(\[?|from\s)\s*["']((?:https?:)?//[^"']+)["']""")


def remote_scripts(html_dir: Path) -> list[tuple[str, str]]:
    """``(page, url)`` for every script a built page would fetch from the network: a ``<script src>``,
    a module ``import()``/``from``, or a ``require`` of an absolute URL."""
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        for rx in (_SCRIPT_SRC, _IMPORT_URL):
            found += [(str(page.relative_to(html_dir)), m.group(1)) for m in rx.finditer(text)]
    return found


def machine_paths(html_dir: Path, cfg) -> list[tuple[str, str]]:
    """``(page, text around it)`` wherever a built page names a folder of the building machine: the
    repository, the home folder, the dataset or the cache (a page must read the same anywhere)."""
    roots = {str(paths.repo_root().resolve()), str(Path.home().resolve()), str(paths.cache_root().resolve())}
    roots.add(str(Path(cfg.data_root).resolve()))
    roots = {r for r in roots if r not in ("/", "")}
    found = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        for root in roots:
            i = text.find(root)
            if i >= 0:
                found.append((str(page.relative_to(html_dir)), text[max(0, i - 40) : i + len(root) + 40]))
    return found
