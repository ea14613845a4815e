"""The declared pipeline: each step of a profile's plan, what it reads and what it makes, in one place.

    STEPS["03_explain"].settings      # ('data', 'audit', 'model', 'train', 'segment')
    file("03_explain", "segmentation")  # 'summary.json': the product whose schema is 'segmentation'
    STEPS["02_train"].results         # 'variants/{variant}/seed-{seed}': where collect publishes it

A step is one notebook (`tumorlens.experiments.jobs.Job` runs it with parameters). It declares

- ``upstream``: the steps whose runs it reads (named in its parameters; `jobs.upstream_runs`);
- ``settings``: the sections of ``_config.yml`` it reads -- a change elsewhere leaves its results
  current (`jobs.job_inputs` hashes exactly these). The runner checks the declaration on every run:
  the notebook's kernel records each section it touches (`tumorlens.config.trace_sections`) and a
  section read but not declared fails the job (`check_run`);
- ``products``: every file it writes into its run folder (glob patterns), each with its schema when it
  is a versioned JSON file (`tumorlens.utils.schema`), and whether `collect` publishes it into
  ``results/<profile>/<results>`` (``published``) -- a file that no product declares fails the job too;
- ``code``: the library packages its numbers depend on (the code fingerprint a published product
  records, `code_fingerprint`).

The runner, `collect`, the published-results loader and the book take file names from here.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tumorlens import paths

__all__ = [
    "Product",
    "Step",
    "STEPS",
    "RUNNER_FILES",
    "file",
    "products",
    "undeclared_files",
    "undeclared_sections",
    "code_fingerprint",
    "check_run",
    "StepDeclarationError",
]


class StepDeclarationError(RuntimeError):
    """A step that read a settings section or wrote a file its declaration does not name."""


@dataclass(frozen=True)
class Product:
    """One file (or glob pattern) a step writes into its run folder."""

    pattern: str
    schema: str | None = None  # the results schema of a versioned JSON file
    published: bool = True  # copied into results/<profile>/ by collect
    doc: str = ""

    def matches(self, rel: str) -> bool:
        return fnmatch.fnmatchcase(rel, self.pattern)


@dataclass(frozen=True)
class Step:
    name: str
    notebook: str
    upstream: tuple[str, ...]
    settings: tuple[str, ...]
    products: tuple[Product, ...]
    results: str  # where collect publishes the products, under results/<profile>/ ({variant}, {seed})
    code: tuple[str, ...]
    doc: str = ""

    def product(self, key: str) -> Product:
        """The product named by its schema or its file name."""
        for p in self.products:
            if key in (p.schema, p.pattern):
                return p
        raise KeyError(
            f"step {self.name} declares no product {key!r}; it declares {[p.pattern for p in self.products]}"
        )


#: What the runner itself writes into every job's folder (not the notebook's products).
RUNNER_FILES = (".done.json", "notebook.ipynb", "source.ipynb", ".settings-trace")

_DATA_CODE = ("config", "data")
_TRAIN_CODE = (*_DATA_CODE, "models", "training", "metrics", "records")
_RUN = (
    Product(
        "config.json", "run", published=False, doc="resolved settings, environment, summary (published as run.json)"
    ),
    Product("run.json", "run", doc="config.json as collect publishes it (portable paths)"),
    Product("model.keras", published=False, doc="the best checkpoint (weights published only for models/<profile>)"),
    Product("metrics.json", "metrics", doc="classification metrics, official and de-duplicated test sets"),
    Product("predictions.csv", doc="per test image: true class, probabilities, predicted class, dedup flag"),
    Product("val_predictions.csv", doc="the same for validation"),
    Product("history.csv", doc="one row per epoch"),
    Product("features.npz", published=False, doc="penultimate features, a cache 04_ensembles writes here"),
)

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            "01_data",
            "01_data",
            (),
            ("data", "audit", "augment"),
            (
                Product("scan.json", "scan"),
                Product("audit.json", "audit"),
                Product("dedup_test.csv", doc="the de-duplicated test subset"),
                Product("splits.json", "splits"),
                Product("figures/*.jpg", doc="small rendered figures of the CC0 Kaggle images"),
            ),
            "data",
            _DATA_CODE,
            "scan, leakage audit, split",
        ),
        Step(
            "02_train",
            "02_train",
            (),
            ("data", "audit", "augment", "model", "train"),
            _RUN,
            "variants/{variant}/seed-{seed}",
            _TRAIN_CODE,
            "one variant and seed, two-phase transfer learning",
        ),
        Step(
            "02_vit",
            "02_vit",
            ("02_train",),
            ("data", "audit", "augment", "model", "train"),
            _RUN,
            "variants/{variant}/seed-{seed}",
            _TRAIN_CODE,
            "the minimal ViT from scratch (read beside a CNN run)",
        ),
        Step(
            "03_explain",
            "03_explain",
            ("02_train",),
            ("data", "audit", "model", "train", "segment"),
            (
                Product("summary.json", "segmentation"),
                Product("segment.json", "segment", doc="what predict uses: map, mask, tuned thresholds"),
                Product("tuning.json", "tuning"),
                Product("network.json", "network"),
                Product("methods.csv"),
                Product("per_image.csv"),
                Product("per_image_methods.csv"),
                Product("gallery.npz", doc="the gallery picks' low-resolution maps"),
                Product("gallery_public_*.jpg", doc="galleries of CC0 Kaggle images (no expert masks)"),
                Product("gallery_*.png", published=False, doc="galleries with the expert masks (BRISC: not published)"),
                Product(
                    "segmenter.keras", published=False, doc="the weak-mask network (published in models/<profile>)"
                ),
                Product("figures/*.jpg", doc="small rendered figures"),
            ),
            "segmentation",
            (*_TRAIN_CODE, "explain"),
            "maps compared on expert masks, the weak-mask network, segment.json",
        ),
        Step(
            "03_localisation",
            "03_localisation",
            ("02_train",),
            ("data", "audit", "model", "train", "segment"),
            (Product("localisation.json", "localisation"),),
            "segmentation/localisation",
            (*_TRAIN_CODE, "explain"),
            "the localisation ablation: the standard head against heads that pool the strongest locations",
        ),
        Step(
            "04_ensembles",
            "04_ensembles",
            ("02_train",),
            ("data", "audit"),
            (
                Product("ensembles.json", "ensembles"),
                Product("*_predictions.csv", doc="per test image, per system"),
                Product("*.joblib", published=False, doc="fitted hybrid pipelines"),
                Product("*.npz", published=False, doc="fitted hybrid pipelines"),
                Product("*.json", published=False, doc="fitted hybrid pipelines' settings"),
            ),
            "ensembles",
            (*_TRAIN_CODE, "evaluation"),
            "soft voting and CNN features + LR / SVM",
        ),
        Step(
            "05_robustness",
            "05_robustness",
            ("02_train",),
            ("data", "audit"),
            (Product("robustness.json", "robustness"),),
            "robustness",
            (*_TRAIN_CODE, "evaluation"),
            "corruptions and calibration of one run",
        ),
    )
}


def file(step: str, key: str) -> str:
    """The file name of ``step``'s product ``key`` (its schema name or its file name)."""
    return STEPS[step].product(key).pattern


def products(step: str, *, published: bool | None = None) -> list[Product]:
    """``step``'s products (only the published ones, or only the others, when ``published`` is given)."""
    return [p for p in STEPS[step].products if published is None or p.published == published]


def undeclared_files(step: str, run_dir: str | Path) -> list[str]:
    """Files under ``run_dir`` (relative, posix) that neither ``step`` nor the runner declares."""
    root = Path(run_dir)
    out = []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        if rel in RUNNER_FILES or rel.startswith("."):
            continue
        if not any(p.matches(rel) for p in STEPS[step].products):
            out.append(rel)
    return out


def undeclared_sections(step: str, read: Iterable[str]) -> list[str]:
    """The settings sections in ``read`` that ``step`` does not declare."""
    return sorted(set(read) - set(STEPS[step].settings))


def code_fingerprint(step: str) -> str:
    """A hash of the library source of the packages ``step`` declares in ``code`` (file names and bytes):
    what a published product records, so a reader can tell which code made it."""
    lib = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in sorted(STEPS[step].code):
        p = lib / pkg
        files = sorted(p.rglob("*.py")) if p.is_dir() else [lib / f"{pkg}.py"]
        for f in files:
            if f.is_file():
                h.update(f.relative_to(lib).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def check_run(step: str, run_dir: str | Path, sections_read: Iterable[str] | None) -> None:
    """Raise `StepDeclarationError` when the job of ``step`` that wrote ``run_dir`` read a settings section
    or wrote a file its declaration does not name (``sections_read`` None: not traced)."""
    problems = []
    if sections_read is not None:
        extra = undeclared_sections(step, sections_read)
        if extra:
            problems.append(
                f"read settings section(s) {extra} that it does not declare (declared: {list(STEPS[step].settings)})"
            )
    files = undeclared_files(step, run_dir)
    if files:
        problems.append(f"wrote {files} that no product of it declares")
    if problems:
        raise StepDeclarationError(
            f"step {step} ({paths.relative(run_dir)}) " + "; ".join(problems) + ": declare them in "
            "tumorlens.experiments.steps.STEPS (or stop reading/writing them)"
        )
