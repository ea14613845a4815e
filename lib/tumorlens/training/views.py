"""The estimated slice plane of each training image, for `train.view_balance`
(`tumorlens.data.views`): features of the ImageNet EfficientNet-Lite0 (global average pooled, 224 px)
and a logistic regression fitted to the hand-labelled sample of Kaggle Training images
(``data/annotations/kaggle_training_views.csv``). Image labels of the tumour classes are not used.

    views, record = estimate_views(x_train, data_root, cache_key="...")   # ("axial", ...), {"cv_accuracy", ...}
"""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np

from tumorlens import paths
from tumorlens.data.annotations import read_view_labels, view_labels_file
from tumorlens.data.io import letterbox, read_any
from tumorlens.data.views import fit_view_estimator
from tumorlens.models.backbones import build_backbone
from tumorlens.models.inference import batched_predict
from tumorlens.utils.files import cached, save_npy

__all__ = ["VIEW_FEATURES", "estimate_views", "view_features"]

#: the feature extractor of the plane estimate: backbone, weights, input side
VIEW_FEATURES = ("efficientnet_lite0", "imagenet", 224)


def _feature_model():
    name, weights, size = VIEW_FEATURES
    inp = keras.Input((size, size, 3), name="image")
    body = build_backbone(name, inp, weights=weights)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="pool")(body.output), name="view_features")


def _to_size(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def view_features(
    images: np.ndarray, *, model=None, batch_size: int = 32, cache_key: str | None = None, show_progress: bool = False
) -> np.ndarray:
    """Features ``(N, 1280)`` of uint8 images ``(N, H, W, 3)`` (square; resized to 224 px), from
    ``$TUMORLENS_CACHE/views/<cache_key>.npy`` when given and present."""
    size = VIEW_FEATURES[2]

    def compute() -> np.ndarray:
        m = model or _feature_model()
        x = _to_size(images, size).astype("float32")
        return batched_predict(m, [x], batch_size, "plane features", show_progress)[0].astype(np.float32)

    if not cache_key:
        return compute()
    return cached(paths.cache_root() / "views" / f"{cache_key}.npy", np.load, compute, save_npy)


def estimate_views(
    images: np.ndarray,
    data_root: str | Path,
    *,
    labels_file: str | Path | None = None,
    batch_size: int = 32,
    cache_key: str | None = None,
    show_progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """The estimated plane of each image and a record of the estimate (the labelled sample, its
    cross-validated accuracy, the feature extractor). The labelled files are read from ``data_root``
    (the Kaggle layout); a missing one is a `FileNotFoundError` naming it."""
    rows = read_view_labels(labels_file)
    root = Path(data_root)
    missing = [r["file"] for r in rows if not (root / r["file"]).is_file()]
    if missing:
        raise FileNotFoundError(
            f"train.view_balance needs the hand-labelled Kaggle Training images of "
            f"{paths.relative(Path(labels_file) if labels_file else view_labels_file())}; "
            f"{len(missing)} are not under {root} (e.g. {missing[0]}): point data.root at the Kaggle dataset"
        )
    size = VIEW_FEATURES[2]
    model = _feature_model()
    labelled = np.stack([letterbox(read_any(root / r["file"]), size) for r in rows])
    f_lab = view_features(labelled, model=model, batch_size=batch_size)
    clf, check = fit_view_estimator(f_lab, [r["view"] for r in rows])
    feats = view_features(images, model=model, batch_size=batch_size, cache_key=cache_key, show_progress=show_progress)
    views = clf.predict(feats).astype(str)
    record = {"features": "/".join(map(str, VIEW_FEATURES)), "labelled": check}
    return views, record
