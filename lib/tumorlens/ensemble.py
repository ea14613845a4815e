"""Ensembles: soft voting over trained runs, and CNN features + scikit-learn classifiers.

Soft voting averages class probabilities (optionally weighted). Members are chosen as "the
high-performing models" by their **validation** macro-F1 — never by test scores (`select_members`).

The hybrid pipelines take the penultimate features of one or more trained CNNs (the input of the
``predictions`` layer; cached per run in ``features.npz``) and fit ``StandardScaler +
LogisticRegression`` or ``StandardScaler + SVC`` (probabilities by Platt scaling on cross-validated
decision values, scikit-learn's ``CalibratedClassifierCV``), with hyperparameters chosen by
stratified cross-validation on the training split only.

Saved pipelines are joblib files, i.e. **Python pickles: loading one can run arbitrary code.** Load
only files you produced yourself (`load_pipeline` says so every time).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = ["soft_vote", "RunPredictions", "read_predictions", "select_members", "penultimate_features",
           "run_features", "fit_hybrid", "save_pipeline", "load_pipeline"]


def soft_vote(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of members' class probabilities ``[(N, K), ...] -> (N, K)``.

    Weights default to equal; they must be non-negative and not all zero (they are normalised).
    """
    if not len(probs):
        raise ValueError("soft_vote needs at least one member")
    shapes = [np.asarray(p).shape for p in probs]
    if len(set(shapes)) != 1 or len(shapes[0]) != 2:
        raise ValueError(f"every member must give (N, K) probabilities of one shape; received {shapes}")
    arr = np.stack([np.asarray(p, np.float64) for p in probs])
    w = np.ones(len(arr)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(arr),) or (w < 0).any() or w.sum() == 0:
        raise ValueError(f"weights must be {len(arr)} non-negative numbers, not all zero; received {weights!r}")
    return np.tensordot(w / w.sum(), arr, axes=1)


class RunPredictions:
    """A run's saved predictions for one split: paths, labels and probabilities, in file order."""

    def __init__(self, paths: list[str], y: np.ndarray, probs: np.ndarray, name: str = ""):
        self.paths, self.y, self.probs, self.name = paths, y, probs, name

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
        return RunPredictions(list(paths), self.y[idx], self.probs[idx], self.name)


def read_predictions(run_dir: str | Path, split: str = "test") -> RunPredictions:
    """Read ``predictions.csv`` (test) or ``val_predictions.csv`` (val) of a run directory."""
    run_dir = Path(run_dir)
    file = run_dir / ("predictions.csv" if split == "test" else f"{split}_predictions.csv")
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: is {run_dir} a finished run?")
    with open(file) as f:
        rows = list(csv.DictReader(f))
    paths = [r["path"] for r in rows]
    y = np.array([CLASSES.index(r["true_class"]) for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    return RunPredictions(paths, y, probs, run_dir.parent.name + "/" + run_dir.name)


def select_members(run_dirs: Sequence[str | Path], k: int = 3, metric: str = "macro_f1") -> list[dict]:
    """Rank runs by their **validation** ``metric`` and keep the best ``k`` (test scores are never read)."""
    from tumorlens.stats import METRICS

    scored = []
    for r in run_dirs:
        v = read_predictions(r, "val")
        scored.append({"run_dir": str(r), "name": v.name, "val_" + metric: METRICS[metric](v.y, v.pred)})
    scored.sort(key=lambda d: -d["val_" + metric])
    return scored[:k]


# ------------------------------------------------------------------------------------------------
def penultimate_features(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The input of the ``predictions`` layer (after pooling/modules/dropout) for uint8 images."""
    import keras

    from tumorlens.train import predict_images

    extractor = keras.Model(model.inputs, model.get_layer("predictions").input)
    return predict_images(extractor, images, batch_size)


def run_features(run_dir: str | Path, prep, splits: Sequence[str] = ("train", "val", "test"),
                 show_progress: bool = True) -> dict[str, np.ndarray]:
    """Penultimate features of a trained run for the given splits, cached in ``<run>/features.npz``
    (keyed by the split's image paths, so a different split recomputes)."""
    import hashlib

    import keras

    run_dir = Path(run_dir)
    cache = run_dir / "features.npz"
    keys = {s: hashlib.sha1("\n".join(r.rel for r in prep.splits[s]).encode()).hexdigest()[:16] for s in splits}
    stored: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as z:
            stored = {k: z[k] for k in z.files}
    out, model = {}, None
    for s in splits:
        name = f"{s}-{keys[s]}"
        if name not in stored:
            model = model or keras.models.load_model(run_dir / "model.keras")
            stored[name] = penultimate_features(model, prep.images(s, show_progress)).astype(np.float32)
        out[s] = stored[name]
    np.savez(cache, **stored)
    return out


def fit_hybrid(x_train: np.ndarray, y_train: np.ndarray, kind: str = "lr", *, seed: int = 42, cv: int = 5,
               n_jobs: int | None = None):
    """Fit ``StandardScaler + LogisticRegression`` (``lr``) or ``+ SVC`` (``svm``) with the
    hyperparameters chosen by stratified ``cv``-fold cross-validation on the training data.

    Returns the fitted best pipeline; its ``cv_results_summary`` attribute lists the grid scores.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "lr":
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=3000))])
        grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    elif kind == "svm":  # probabilities by Platt scaling fitted on cross-validated decision values
        svc = CalibratedClassifierCV(SVC(random_state=seed), ensemble=False, cv=3)
        pipe = Pipeline([("scale", StandardScaler()), ("clf", svc)])
        grid = {"clf__estimator__C": [0.1, 1.0, 10.0],
                "clf__estimator__gamma": ["scale", 0.1 / max(1, x_train.shape[1])]}
    else:
        raise ValueError(f"kind must be 'lr' or 'svm'; received kind={kind!r}")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, grid, scoring="f1_macro", cv=folds, n_jobs=n_jobs, refit=True)
    search.fit(x_train, y_train)
    best = search.best_estimator_
    best.cv_results_summary = [{"params": p, "mean_f1_macro": float(s)} for p, s in
                               zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])]
    best.best_params_ = search.best_params_
    return best


def save_pipeline(pipeline, path: str | Path) -> Path:
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, path)
    return path


def load_pipeline(path: str | Path):
    """Load a saved hybrid pipeline. A joblib file is a Python pickle: loading it can execute
    arbitrary code, so load only files you produced yourself."""
    import joblib

    warnings.warn(f"{path}: joblib files are Python pickles and loading one can run arbitrary code; "
                  "load only pipelines you saved yourself", UserWarning, stacklevel=2)
    return joblib.load(path)
