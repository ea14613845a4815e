"""The run directory, written and read in one place.

A training run writes, under ``runs/<profile>/<variant>/seed-<n>/``::

    config.json          resolved settings, environment (git commit, packages) and the run's summary
    model.keras          the best checkpoint (never committed)
    history.csv          one row per epoch
    metrics.json         classification metrics per test set (`TEST_SETS`)
    predictions.csv      per test image: path, true class, 4 probabilities, predicted class, dedup flag
    val_predictions.csv  the same for validation (ensemble members are chosen on it, never on test)

`collect` copies the small files into ``results/<profile>/variants/...`` with ``run.json`` in place of
``config.json``; `load_run` reads either form. The test sets are named once, here: ``official`` (the
whole Testing split) and ``dedup`` (its de-duplicated subset).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, Config
from tumorlens.metrics.classification import classification_metrics
from tumorlens.metrics.stats import METRICS as SCORES
from tumorlens.utils.files import atomic_path, read_json, write_json

__all__ = [
    "END_TO_END",
    "FULL_RUN",
    "end_to_end_file",
    "CONFIG",
    "RUN_INFO",
    "MODEL",
    "HISTORY",
    "METRICS",
    "PREDICTIONS",
    "VAL_PREDICTIONS",
    "RUN_FILES",
    "PUBLISHED_RUNS",
    "published_run",
    "TEST_SETS",
    "test_sets",
    "RunPredictions",
    "read_predictions",
    "rank_by_validation",
    "best_by_validation",
    "read_rows",
    "write_predictions",
    "write_test_results",
    "write_history",
    "find_runs",
    "load_run",
    "RunInfo",
]

CONFIG = "config.json"
RUN_INFO = "run.json"
MODEL = "model.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
VAL_PREDICTIONS = "val_predictions.csv"
#: the small files `collect` publishes (never the model)
RUN_FILES = (METRICS, PREDICTIONS, VAL_PREDICTIONS, HISTORY)
#: where `collect` puts the compact copies inside ``results/<profile>/`` (not "runs": that name is reserved
#: for the uncommitted run outputs)
PUBLISHED_RUNS = "variants"
#: In ``runs/<profile>/``: the last invocation that ran every job of the profile at once, and its wall time.
END_TO_END = "end_to_end.json"
#: In ``runs/<profile>/``: the last invocation that ran every job of several parts in turn (`make reproduce`).
FULL_RUN = "full_run.json"


def end_to_end_file(part: str | None = None) -> str:
    """``end_to_end.json`` (every job of the profile at once) or ``end_to_end-<part>.json`` (one part)."""
    return END_TO_END if part is None else f"end_to_end-{part}.json"


#: the test sets every score is reported on
TEST_SETS = ("official", "dedup")


def test_sets(dedup: Sequence[bool] | np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``[("official", all-true mask), ("dedup", dedup mask)]`` for a test split with its dedup flags."""
    d = np.asarray(dedup, bool)
    return [("official", np.ones(len(d), bool)), ("dedup", d)]


class RunPredictions:
    """A run's saved predictions for one split: paths, labels, probabilities and (test only) the
    de-duplicated flags, in file order."""

    def __init__(
        self, paths: list[str], y: np.ndarray, probs: np.ndarray, name: str = "", dedup: np.ndarray | None = None
    ):
        self.paths, self.y, self.probs, self.name = paths, y, probs, name
        self.dedup = np.zeros(len(paths), bool) if dedup is None else np.asarray(dedup, bool)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)

    def align(self, paths: Sequence[str]) -> "RunPredictions":
        """The same predictions reordered to ``paths`` (which must all be present)."""
        pos = {p: i for i, p in enumerate(self.paths)}
        missing = [p for p in paths if p not in pos]
        if missing:
            raise ValueError(f"run {self.name!r} has no prediction for {len(missing)} image(s), e.g. {missing[0]!r}")
        idx = [pos[p] for p in paths]
        return RunPredictions(list(paths), self.y[idx], self.probs[idx], self.name, self.dedup[idx])


def rank_by_validation(run_dirs: Sequence[str | Path], metric: str = "macro_f1") -> tuple[list[dict], list[str]]:
    """Finished runs ranked by their **validation** ``metric`` (test scores are never read), best first:
    ``([{"run_dir", "name", "val_<metric>"}, ...], runs without validation predictions)``."""
    scored, missing = [], []
    for r in run_dirs:
        if not (Path(r) / VAL_PREDICTIONS).is_file():
            missing.append(paths.relative(r))
            continue
        v = read_predictions(r, "val")
        scored.append({"run_dir": paths.relative(r), "name": v.name, "val_" + metric: SCORES[metric](v.y, v.pred)})
    scored.sort(key=lambda d: -d["val_" + metric])
    return scored, missing


def best_by_validation(run_dirs: Sequence[str | Path]) -> dict:
    """The finished run with the best validation macro-F1, as the ensembles choose their single best:
    ``{"run_dir", "name", "val_macro_f1", "considered", "missing"}``. Runs without validation
    predictions are listed under ``missing`` (not silently dropped)."""
    ranked, missing = rank_by_validation(run_dirs)
    if not ranked:
        raise FileNotFoundError(f"none of the {len(run_dirs)} candidate runs has validation predictions")
    return {**ranked[0], "considered": len(ranked), "missing": missing}


def read_predictions(run_dir: str | Path, split: str = "test") -> RunPredictions:
    """Read ``predictions.csv`` (test) or ``val_predictions.csv`` (val) of a run directory, or a
    predictions file in that layout given by its path (e.g. an ensemble's)."""
    run_dir = Path(run_dir)
    file = run_dir if run_dir.is_file() else run_dir / (PREDICTIONS if split == "test" else f"{split}_{PREDICTIONS}")
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: is {run_dir} a finished run?")
    with open(file, newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [r["path"] for r in rows]
    y = np.array([CLASSES.index(r["true_class"]) for r in rows], dtype=int)
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows]).reshape(len(rows), len(CLASSES))
    dedup = np.array([r.get("dedup", "0") == "1" for r in rows], dtype=bool)
    return RunPredictions(paths, y, probs, run_dir.parent.name + "/" + run_dir.name, dedup)


def write_predictions(path: str | Path, records: Sequence, probs: np.ndarray, dedup: set[str] | None = None) -> Path:
    """Per-image CSV (atomic): path (relative to the dataset root), true class, the 4 probabilities, the
    predicted class and — for test sets — whether the image is in the de-duplicated subset.

    ``records`` are `tumorlens.data.ImageRecord`-like: ``.rel`` and ``.cls``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "path",
                "true_class",
                *[f"p_{c}" for c in CLASSES],
                "pred_class",
                *(["dedup"] if dedup is not None else []),
            ]
        )
        for r, p in zip(records, probs):
            w.writerow(
                [
                    r.rel,
                    r.cls,
                    *[f"{v:.6f}" for v in p],
                    CLASSES[int(np.argmax(p))],
                    *([int(r.rel in dedup)] if dedup is not None else []),
                ]
            )
    return Path(path)


def write_test_results(run_dir: str | Path, records: Sequence, probs: np.ndarray, dedup: set[str]) -> dict:
    """Score test ``records`` on every test set, write ``metrics.json`` and ``predictions.csv``; return the metrics."""
    run_dir = Path(run_dir)
    y = np.array([CLASSES.index(r.cls) for r in records], dtype=int)
    flags = np.array([r.rel in dedup for r in records], dtype=bool)
    metrics = {name: classification_metrics(y[m], probs[m]) for name, m in test_sets(flags)}
    write_json(run_dir / METRICS, metrics, schema="metrics")
    write_predictions(run_dir / PREDICTIONS, records, probs, dedup)
    return metrics


def write_history(path: str | Path, rows: Sequence[dict]) -> Path:
    """One row per epoch (the epoch and phase columns first), atomically."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("phase", "epoch"), k))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def read_rows(path: str | Path) -> list[dict]:
    """A CSV results file (``history.csv``, ``per_image.csv``, ...) as a list of row dicts, file closed."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def published_run(res: str | Path, variant: str, seed: int) -> Path:
    """A collected run's folder: ``results/<profile>/variants/<variant>/seed-<seed>``."""
    return Path(res) / PUBLISHED_RUNS / variant / f"seed-{seed}"


def find_runs(root: str | Path) -> list[Path]:
    """Finished run directories under ``root`` (``<variant>/seed-<n>`` with metrics and predictions)."""
    return sorted(p.parent for p in Path(root).glob(f"*/seed-*/{METRICS}") if (p.parent / PREDICTIONS).is_file())


def load_run(run_dir: str | Path) -> dict:
    """A collected (``run.json``) or live (``config.json``) run: its summary, config, metrics and test
    predictions (`RunPredictions`, with ``dedup`` flags)."""
    run_dir = Path(run_dir)
    info_file = run_dir / RUN_INFO if (run_dir / RUN_INFO).is_file() else run_dir / CONFIG
    info = read_json(info_file, schema="run")
    pred = read_predictions(run_dir)
    return {
        "name": f"{run_dir.parent.name}/{run_dir.name}",
        "variant": run_dir.parent.name,
        "seed": int(run_dir.name.split("-")[-1]),
        "summary": info["summary"],
        "config": info["config"],
        "metrics": read_json(run_dir / METRICS, schema="metrics"),
        "pred": pred,
        "dedup": pred.dedup,
    }


@dataclass(frozen=True)
class RunInfo:
    """One record of a training run, read once (`RunInfo.read`) by every layer instead of re-parsing its
    ``config.json`` (live, in runs/) or ``run.json`` (collected, in results/): the recipe that rebuilds the
    model, the seed, the resolved settings, the input size, the commit and the profile.

        info = RunInfo.read("runs/cpu/efficientnet_lite1/seed-43")
        info.backbone, info.image_size, info.recipe     # 'efficientnet_lite1', 240, {...}
    """

    run_dir: Path
    settings: Config
    summary: dict
    environment: dict
    dataset: dict | None

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunInfo":
        """From a run folder (``config.json`` or ``run.json``) or one of those files; `FileNotFoundError`
        naming the folder when it holds neither."""
        p = Path(run_dir)
        folder = p.parent if p.is_file() else p
        file = p if p.is_file() else next((folder / n for n in (CONFIG, RUN_INFO) if (folder / n).is_file()), None)
        if file is None:
            raise FileNotFoundError(f"{folder}: no {CONFIG} or {RUN_INFO}: is it a finished training run?")
        info = read_json(file, schema="run")
        return cls(folder, Config.from_dict(info["config"]), info["summary"], info["environment"], info.get("dataset"))

    @property
    def backbone(self) -> str:
        return self.settings.model.backbone

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(self.settings.model.modules)

    @property
    def pooling(self) -> str:
        return self.settings.model.pooling

    @property
    def seed(self) -> int:
        return int(self.settings.seed)

    @property
    def image_size(self) -> int:
        return int(self.settings.data.image_size)

    @property
    def profile(self) -> str:
        return self.settings.profile

    @property
    def commit(self) -> dict:
        return self.environment.get("git") or {}

    @property
    def name(self) -> str:
        """``<variant folder>/seed-<n>``, as the results and the published models name a run."""
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"

    @property
    def recipe(self) -> dict:
        """What rebuilds the architecture (`tumorlens.models.build_classifier`), as ``models.json`` stores
        it: backbone, modules, input size, dropout, the ViT's settings, a head pooling other than the
        paper's, and the weights the library builds before trained ones are loaded over them (the ImageNet
        backbone where the run started from it, else random)."""
        m = self.settings.model
        recipe = {"backbone": m.backbone, "modules": list(m.modules), "image_size": self.image_size}
        recipe["dropout"] = float(m.dropout)
        if m.backbone == "vit":
            recipe["vit"] = self.settings.to_dict()["model"]["vit"]
        if m.pooling != "gap":  # recipes from before the setting: gap
            recipe["pooling"] = m.pooling
        recipe["base"] = "imagenet" if m.weights == "imagenet" else "none"
        return recipe
