"""Ensembles: soft voting over trained runs, and CNN features + scikit-learn classifiers.

Soft voting averages class probabilities (optionally weighted). Members are chosen as "the
high-performing models" by their **validation** macro-F1 — never by test scores (`select_members`).

The hybrid pipelines take the penultimate features of one or more trained CNNs (the input of the
``predictions`` layer; cached per run in ``features.npz``) and fit ``StandardScaler +
LogisticRegression`` or ``StandardScaler + SVC`` (probabilities by Platt scaling on cross-validated
decision values, scikit-learn's ``CalibratedClassifierCV``; the SVM after PCA to at most 256
dimensions, to keep it affordable on CPUs), with hyperparameters chosen by
stratified cross-validation on the training split only.

Saved pipelines are joblib files, i.e. **Python pickles: loading one can run arbitrary code.** Load
only files you produced yourself (`load_pipeline` says so every time).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tumorlens import paths
from tumorlens.config import Config
from tumorlens.data.prepared import prepare
from tumorlens.metrics.classification import classification_metrics
from tumorlens.metrics.stats import bootstrap_ci, compare
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import penultimate_features
from tumorlens.records import rank_by_validation, read_predictions, test_sets, write_predictions
from tumorlens.training.prefix_cache import cached_prefix_file
from tumorlens.utils.files import read_json, save_npz, write_json

__all__ = [
    "soft_vote",
    "select_members",
    "run_features",
    "fit_hybrid",
    "save_pipeline",
    "load_pipeline",
    "evaluate_ensembles",
]


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


def select_members(run_dirs: Sequence[str | Path], k: int = 3, metric: str = "macro_f1") -> list[dict]:
    """Rank runs by their **validation** ``metric`` and keep the best ``k`` (test scores are never read)."""

    ranked, missing = rank_by_validation(run_dirs, metric)
    if missing:
        raise FileNotFoundError(f"no validation predictions in {', '.join(missing)}: are these finished runs?")
    return ranked[:k]


def run_features(
    run_dir: str | Path, prep, splits: Sequence[str] = ("train", "val", "test"), show_progress: bool = True
) -> dict[str, np.ndarray]:
    """Penultimate features of a trained run for the given splits, cached in ``<run>/features.npz``
    (keyed by the split's image paths, so a different split recomputes)."""

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
            model = model or load_model(run_dir)
            feats = _features_from_cache(model, run_dir, prep, s)
            if feats is None:
                feats = penultimate_features(model, prep.images(s, show_progress))
            stored[name] = feats.astype(np.float32)
        out[s] = stored[name]
    save_npz(cache, **stored)
    return out


def _features_from_cache(model, run_dir: Path, prep, split: str):
    """Penultimate features from the shared prefix cache of the run's training (no backbone pass),
    or None when the cache does not hold this split."""

    info = run_dir / "config.json"
    if not info.is_file():
        return None
    cfg = Config.from_dict(read_json(info, schema="run")["config"])
    found = cached_prefix_file(model, cfg, prep, split)
    if found is None:
        return None
    file, cut_t, extra = found
    with np.load(file) as z:
        inputs = [z["cut"].astype(np.float32)] + ([z["edges"].astype(np.float32)] if extra else [])
    sub = keras.Model([cut_t, *extra], model.get_layer("predictions").input)
    return sub.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=64, verbose=0)


def fit_hybrid(
    x_train: np.ndarray,
    y_train: np.ndarray,
    kind: str = "lr",
    *,
    seed: int = 42,
    cv: int = 3,
    n_jobs: int | None = None,
):
    """Fit ``StandardScaler + LogisticRegression`` (``lr``) or ``+ SVC`` (``svm``) with the
    hyperparameters chosen by stratified ``cv``-fold cross-validation on the training data.

    Returns the fitted best pipeline; its ``cv_results_summary`` attribute lists the grid scores.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "lr":
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=3000))])
        grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    elif kind == "svm":  # probabilities by Platt scaling fitted on cross-validated decision values
        # an RBF SVM costs ~ n^2 d per fit: PCA to at most 256 dimensions keeps the grid search in minutes
        # and PCA must fit inside the smallest cross-validation training fold, not only the full set
        smallest_fold = len(x_train) - -(-len(x_train) // cv)
        svc = CalibratedClassifierCV(SVC(random_state=seed), ensemble=False, cv=3)
        pipe = Pipeline(
            [
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=max(1, min(256, x_train.shape[1], smallest_fold - 1)), random_state=seed)),
                ("clf", svc),
            ]
        )
        grid = {"clf__estimator__C": [1.0, 10.0]}
    else:
        raise ValueError(f"kind must be 'lr' or 'svm'; received kind={kind!r}")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, grid, scoring="f1_macro", cv=folds, n_jobs=n_jobs, refit=True)
    search.fit(x_train, y_train)
    best = search.best_estimator_
    best.cv_results_summary = [
        {"params": p, "mean_f1_macro": float(s)}
        for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])
    ]
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

    warnings.warn(
        f"{path}: joblib files are Python pickles and loading one can run arbitrary code; "
        "load only pipelines you saved yourself",
        UserWarning,
        stacklevel=2,
    )
    return joblib.load(path)


def _system_metrics(name: str, y: np.ndarray, probs: np.ndarray, dedup: np.ndarray, n_boot: int, seed: int) -> dict:

    out = {"name": name}
    for split, m in test_sets(dedup):
        pred = probs[m].argmax(1)
        met = classification_metrics(y[m], probs[m])
        met["ci"] = {k: bootstrap_ci(y[m], pred, k, n_boot=n_boot, seed=seed) for k in ("accuracy", "macro_f1")}
        out[split] = met
    return out


def evaluate_ensembles(
    cfg,
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    k: int = 3,
    prep=None,
    n_boot: int = 2000,
    hybrids: Sequence[str] = ("lr", "svm"),
    show_progress: bool = True,
) -> dict:
    """Single best model, soft voting and CNN-feature hybrids on both test sets, with comparisons.

    Members: the ``k`` runs with the best validation macro-F1 (`select_members`). The single best
    model is the first of them. The hybrids use the concatenated penultimate features of the members,
    fitted with cross-validation on the training split. Every system is scored on the official test
    split and the de-duplicated subset (bootstrap 95% CIs), and each ensemble is compared with the
    single best model (paired bootstrap CI of the difference, McNemar p-value). Writes
    ``ensembles.json``, ``<system>_predictions.csv`` and the fitted pipelines (``hybrid_<kind>.joblib``).
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prep = prep or prepare(cfg, show_progress=show_progress)
    test_recs = prep.splits["test"]
    test_paths = [r.rel for r in test_recs]
    y = np.array([r.label for r in test_recs])
    dedup = prep.dedup_mask()
    members = select_members(run_dirs, k=k)
    preds = {m["run_dir"]: read_predictions(paths.resolve(m["run_dir"])).align(test_paths) for m in members}
    systems: dict[str, np.ndarray] = {"single best": preds[members[0]["run_dir"]].probs}
    if len(members) > 1:
        systems["soft voting"] = soft_vote([preds[m["run_dir"]].probs for m in members])
    hybrid_info = {}
    if hybrids:
        feats = [run_features(paths.resolve(m["run_dir"]), prep, show_progress=show_progress) for m in members]
        x = {s: np.concatenate([f[s] for f in feats], axis=1) for s in ("train", "val", "test")}
        y_tr = prep.labels("train")
        for kind in hybrids:
            pipe = fit_hybrid(x["train"], y_tr, kind, seed=cfg.seed)
            save_pipeline(pipe, out / f"hybrid_{kind}.joblib")
            name = f"CNN+{kind.upper()}"
            systems[name] = pipe.predict_proba(x["test"])
            val_pred = pipe.predict(x["val"])
            hybrid_info[name] = {
                "best_params": {k_: str(v) for k_, v in pipe.best_params_.items()},
                "cv": [
                    {"params": {k_: str(v) for k_, v in r["params"].items()}, "mean_f1_macro": r["mean_f1_macro"]}
                    for r in pipe.cv_results_summary
                ],
                "val_accuracy": float((val_pred == prep.labels("val")).mean()),
                "feature_dim": int(x["train"].shape[1]),
            }
    results = {
        "members": members,
        "hybrids": hybrid_info,
        "n_test": int(len(y)),
        "n_dedup": int(dedup.sum()),
        "systems": {},
        "comparisons": [],
    }
    for name, probs in systems.items():
        results["systems"][name] = _system_metrics(name, y, probs, dedup, n_boot, cfg.seed)
        write_predictions(
            out / f"{name.replace(' ', '_').replace('+', '_').lower()}_predictions.csv",
            test_recs,
            probs,
            set(prep.dedup_test),
        )
    best = systems["single best"].argmax(1)
    for name, probs in systems.items():
        if name == "single best":
            continue
        for split, m in test_sets(dedup):
            for metric in ("accuracy", "macro_f1"):
                row = compare(
                    name, "single best", y[m], probs[m].argmax(1), best[m], metric=metric, n_boot=n_boot, seed=cfg.seed
                )
                results["comparisons"].append({**row, "test_set": split})
    write_json(out / "ensembles.json", results, schema="ensembles")
    return results
