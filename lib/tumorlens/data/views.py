"""The slice plane of every training image, estimated, and training weights that balance the planes
within each class — the lever against the view shortcut (Kaggle's no-tumour slices are nearly all
axial, its tumour slices come in every plane; see `tumorlens.data.annotations`).

Pure functions on arrays; the image features come from the caller (`tumorlens.training.views`
computes them with the ImageNet backbone).

    clf, check = fit_view_estimator(features_of_labelled, views_of_labelled)   # hand labels only
    views = clf.predict(features_of_training)                                  # ("axial", ...)
    w = view_balance_weights(y_train, views, balance=1.0)                      # (N,), mean 1 per class
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorlens.data.annotations import VIEWS

__all__ = ["fit_view_estimator", "view_balance_weights", "view_counts"]


def fit_view_estimator(features: np.ndarray, views: Sequence[str], *, seed: int = 0, folds: int = 5):
    """A logistic regression from image features ``(N, D)`` to the hand-labelled views, and its
    cross-validated accuracy on those labels: ``(classifier, {"n", "folds", "cv_accuracy"})``.

    The features are L2-normalised per image inside the pipeline, so the classifier applies to any
    image's features as they come."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    features = np.asarray(features, dtype=np.float64)
    views = np.asarray(views)
    if features.ndim != 2 or len(features) != len(views):
        raise ValueError(f"features must be (N, D) with one view per row; got {features.shape} for {len(views)} views")
    bad = sorted(set(views.tolist()) - set(VIEWS))
    if bad:
        raise ValueError(f"views must be among {', '.join(VIEWS)}; got {', '.join(map(str, bad))}")
    present, counts = np.unique(views, return_counts=True)
    if len(present) < 2:
        raise ValueError(f"the labelled views hold one plane only ({present.tolist()}): nothing to tell apart")

    def make():
        return make_pipeline(Normalizer(), LogisticRegression(C=10.0, max_iter=5000))

    k = int(min(folds, counts.min()))
    check = {"n": int(len(views)), "folds": k, "cv_accuracy": None}
    if k >= 2:
        cv = StratifiedKFold(k, shuffle=True, random_state=seed)
        pred = cross_val_predict(make(), features, views, cv=cv)
        check["cv_accuracy"] = float(np.mean(pred == views))
    return make().fit(features, views), check


def view_balance_weights(labels: np.ndarray, views: Sequence[str], balance: float) -> np.ndarray:
    """Per-image training weights ``(N,)`` that even out the planes within each class.

    Within class ``c``, an image of plane ``v`` gets ``(n_c / (V_c * n_cv)) ** balance`` (``V_c``:
    the planes class ``c`` holds), rescaled so that the class's weights average 1 — class balance
    stays the class weights' job. ``balance`` 0 gives all ones; 1 gives every plane of a class
    the same total weight."""
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1]; got {balance}")
    labels = np.asarray(labels)
    views = np.asarray(views)
    if len(labels) != len(views):
        raise ValueError(f"one view per label is needed; got {len(views)} views for {len(labels)} labels")
    w = np.ones(len(labels), dtype=np.float64)
    if balance == 0.0:
        return w
    for c in np.unique(labels):
        mine = labels == c
        planes, counts = np.unique(views[mine], return_counts=True)
        raw = {p: (mine.sum() / (len(planes) * n)) ** balance for p, n in zip(planes, counts)}
        w[mine] = [raw[v] for v in views[mine]]
        w[mine] /= w[mine].mean()
    return w


def view_counts(labels: np.ndarray, views: Sequence[str], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{class: {plane: count}}`` over ``VIEWS`` (zeros kept), for the record and the book."""
    labels = np.asarray(labels)
    views = np.asarray(views)
    return {cls: {v: int(np.sum((labels == i) & (views == v))) for v in VIEWS} for i, cls in enumerate(classes)}
