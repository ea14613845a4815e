"""Ensembles: soft voting over trained runs, and CNN features + scikit-learn classifiers.

Soft voting averages class probabilities (optionally weighted). Members are chosen as "the
high-performing models" by their **validation** macro-F1 — never by test scores (`select_members`).

The hybrid pipelines take the penultimate features of one or more trained CNNs (the input of the
``predictions`` layer; cached per run in ``features.npz``) and fit ``StandardScaler +
LogisticRegression`` or ``StandardScaler + SVC`` (probabilities by Platt scaling on cross-validated
decision values, scikit-learn's ``CalibratedClassifierCV``; the SVM after PCA to at most 256
dimensions, to keep it affordable on CPUs), with hyperparameters chosen by
stratified cross-validation on the training split only.

Fitted pipelines are saved as ``.npz`` files -- their arrays and a JSON description, no pickle -- and
loaded as a `HybridClassifier` that computes the same probabilities with NumPy (`save_pipeline`,
`load_pipeline`; tested against scikit-learn). A joblib file (a Python pickle, which loading would
execute) is refused by `load_pipeline`, never opened.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tumorlens import paths
from tumorlens.config import Config
from tumorlens.data.prepared import prepare
from tumorlens.errors import TumorlensError
from tumorlens.metrics.classification import classification_metrics
from tumorlens.metrics.stats import bootstrap_ci, compare
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import penultimate_features
from tumorlens.records import rank_by_validation, read_predictions, test_sets, write_predictions
from tumorlens.training.prefix_cache import cached_prefix_file
from tumorlens.utils.files import atomic_path, read_json, save_npz, write_json

__all__ = [
    "soft_vote",
    "select_members",
    "run_features",
    "fit_hybrid",
    "save_pipeline",
    "load_pipeline",
    "HybridClassifier",
    "HybridFileError",
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


class HybridFileError(TumorlensError, ValueError):
    """A hybrid pipeline file that is not one `save_pipeline` wrote (a joblib pickle is never loaded)."""


_HYBRID_FORMAT, _HYBRID_VERSION = "tumorlens-hybrid", 1


def _pipeline_steps(pipeline) -> list:
    return [est for _, est in pipeline.steps] if hasattr(pipeline, "steps") else [pipeline]


def save_pipeline(pipeline, path: str | Path) -> Path:
    """Write a fitted hybrid (`fit_hybrid`: ``StandardScaler`` [+ ``PCA``] + ``LogisticRegression`` or
    sigmoid-calibrated RBF ``SVC``; or such a classifier alone) as ``.npz``: the arrays, and a JSON header
    naming the steps. No pickle. Raises `HybridFileError` for any other kind of step."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    arrays: dict[str, np.ndarray] = {}
    steps: list[dict] = []
    for i, est in enumerate(_pipeline_steps(pipeline)):
        key = f"s{i}_"
        if isinstance(est, StandardScaler):
            arrays[key + "mean"] = np.zeros(est.n_features_in_) if est.mean_ is None else est.mean_
            arrays[key + "scale"] = np.ones(est.n_features_in_) if est.scale_ is None else est.scale_
            steps.append({"op": "standardise"})
        elif isinstance(est, PCA) and not est.whiten:
            arrays[key + "mean"], arrays[key + "components"] = est.mean_, est.components_
            steps.append({"op": "project"})
        elif isinstance(est, LogisticRegression):
            arrays[key + "coef"], arrays[key + "intercept"] = est.coef_, est.intercept_
            arrays[key + "classes"] = np.asarray(est.classes_)
            steps.append({"op": "logistic"})
        elif (
            isinstance(est, CalibratedClassifierCV)
            and len(est.calibrated_classifiers_) == 1
            and est.calibrated_classifiers_[0].method == "sigmoid"
            and isinstance(est.calibrated_classifiers_[0].estimator, SVC)
            and est.calibrated_classifiers_[0].estimator.kernel == "rbf"
            and len(est.classes_) > 2
        ):
            cal = est.calibrated_classifiers_[0]
            svc = cal.estimator
            arrays[key + "support_vectors"] = svc.support_vectors_
            arrays[key + "dual_coef"] = svc.dual_coef_
            arrays[key + "intercept"] = svc.intercept_
            arrays[key + "n_support"] = np.asarray(svc.n_support_, np.int64)
            arrays[key + "classes"] = np.asarray(est.classes_)
            arrays[key + "cal_a"] = np.array([c.a_ for c in cal.calibrators], np.float64)
            arrays[key + "cal_b"] = np.array([c.b_ for c in cal.calibrators], np.float64)
            steps.append({"op": "calibrated_rbf_svm", "gamma": float(svc._gamma), "break_ties": bool(svc.break_ties)})
        else:
            raise HybridFileError(f"{path}: cannot store a {type(est).__name__} step without pickle")
    if steps[-1]["op"] not in ("logistic", "calibrated_rbf_svm"):
        raise HybridFileError(f"{path}: a hybrid must end in a classifier; received steps {[s['op'] for s in steps]}")
    header = {
        "format": _HYBRID_FORMAT,
        "version": _HYBRID_VERSION,
        "steps": steps,
        "best_params": {k: str(v) for k, v in getattr(pipeline, "best_params_", {}).items()},
    }
    path = Path(path)
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, header=np.array(json.dumps(header)), **arrays)
    return path


class HybridClassifier:
    """A hybrid pipeline read back by `load_pipeline`: ``predict_proba (N, D) -> (N, K)`` and ``predict``
    as scikit-learn computes them (standardise, project, then multinomial logistic regression or the RBF
    SVM's one-vs-rest decision values calibrated by per-class sigmoids), in NumPy."""

    def __init__(self, steps: list[dict], arrays: dict[str, np.ndarray], best_params: dict | None = None):
        self.steps, self.arrays, self.best_params_ = steps, arrays, best_params or {}
        last = len(steps) - 1
        self.classes_ = arrays[f"s{last}_classes"]

    def _transform(self, x: np.ndarray) -> np.ndarray:
        for i, st in enumerate(self.steps[:-1]):
            a = {k[len(f"s{i}_") :]: v for k, v in self.arrays.items() if k.startswith(f"s{i}_")}
            if st["op"] == "standardise":
                x = (x - a["mean"]) / a["scale"]
            elif st["op"] == "project":
                x = (x - a["mean"]) @ a["components"].T
        return x

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (N, D); received shape {x.shape}")
        x = self._transform(x)
        i = len(self.steps) - 1
        a = {k[len(f"s{i}_") :]: v for k, v in self.arrays.items() if k.startswith(f"s{i}_")}
        if self.steps[-1]["op"] == "logistic":
            z = x @ a["coef"].T + a["intercept"]
            if z.shape[1] == 1:  # binary
                p1 = 1 / (1 + np.exp(-z[:, 0]))
                return np.stack([1 - p1, p1], axis=1)
            z = z - z.max(1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(1, keepdims=True)
        dec = self._svm_decision(x, a, self.steps[-1]["gamma"])
        proba = 1 / (1 + np.exp(a["cal_a"] * dec + a["cal_b"]))  # expit(-(a f + b)), per class
        total = proba.sum(1, keepdims=True)
        proba = np.divide(proba, total, out=np.full_like(proba, 1 / proba.shape[1]), where=total != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba

    @staticmethod
    def _svm_decision(x: np.ndarray, a: dict, gamma: float) -> np.ndarray:
        """libsvm's one-vs-one decision values, turned into scikit-learn's one-vs-rest shape."""
        sv, coef, n_sup = a["support_vectors"], a["dual_coef"], a["n_support"]
        k = np.exp(-gamma * (np.sum(x**2, 1)[:, None] - 2 * x @ sv.T + np.sum(sv**2, 1)[None, :]))
        starts = np.concatenate([[0], np.cumsum(n_sup)])
        n_cls = len(n_sup)
        votes = np.zeros((len(x), n_cls))
        conf = np.zeros((len(x), n_cls))
        p = 0
        for i in range(n_cls):
            for j in range(i + 1, n_cls):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                d = k[:, si] @ coef[j - 1, si] + k[:, sj] @ coef[i, sj] + a["intercept"][p]
                conf[:, i] += d  # sklearn: sum_of_confidences[:, i] -= -d
                conf[:, j] -= d
                votes[:, i] += d >= 0  # sklearn: predictions = dec < 0 -> class j
                votes[:, j] += d < 0
                p += 1
        return votes + conf / (3 * (np.abs(conf) + 1))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(1)]


def load_pipeline(path: str | Path) -> HybridClassifier:
    """Read a hybrid written by `save_pipeline` (``allow_pickle=False``). Anything else -- a joblib or pickle
    file above all, whose loading could run arbitrary code -- raises `HybridFileError` naming it, unopened."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise HybridFileError(
            f"{path}: not a tumorlens hybrid file (.npz); joblib and pickle files are never loaded, since loading "
            "one can run arbitrary code: rerun the ensemble step (tumorlens run --only 04_ensembles --force)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files if k != "header"}
    except (OSError, ValueError, KeyError) as exc:
        raise HybridFileError(f"{path}: not a readable hybrid file ({type(exc).__name__}: {exc})") from None
    if header.get("format") != _HYBRID_FORMAT or header.get("version") != _HYBRID_VERSION:
        raise HybridFileError(f"{path}: format {header.get('format')!r} v{header.get('version')!r}, not a hybrid file")
    return HybridClassifier(header["steps"], arrays, header.get("best_params"))


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
    ``ensembles.json``, ``<system>_predictions.csv`` and the fitted pipelines (``hybrid_<kind>.npz``).
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
            save_pipeline(pipe, out / f"hybrid_{kind}.npz")
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
