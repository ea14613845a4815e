"""Robustness to image corruptions, and calibration before and after temperature scaling.

Corruptions (severity 1-3, applied to uint8 RGB images, deterministic in the seed):

- ``noise``: additive Gaussian noise, sigma 8 / 16 / 32 grey levels;
- ``blur``: Gaussian blur, sigma 1 / 2 / 3 px (at 224 px);
- ``brightness``: intensities scaled by 1.3 / 1.6 / 2.0 (clipped);
- ``contrast``: contrast reduced to 0.7 / 0.5 / 0.3 around the image mean;
- ``jpeg``: JPEG re-encoding at quality 50 / 25 / 10;
- ``rotation``: rotation by 5 / 10 / 15 degrees about the centre.

Calibration: expected calibration error (15 bins) and a reliability diagram; temperature scaling
(Guo et al., 2017) fits one temperature on the **validation** split by minimising its negative
log-likelihood and is judged on the test split.
"""

from __future__ import annotations

import cv2
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.data.prepared import prepare
from tumorlens.metrics.classification import expected_calibration_error
from tumorlens.metrics.stats import bootstrap_ci, paired_bootstrap_diff
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import predict_images
from tumorlens.records import read_predictions, test_sets
from tumorlens.utils.files import write_json
from tumorlens.utils.progress import progress

__all__ = [
    "CORRUPTIONS",
    "corrupt",
    "robustness_table",
    "fit_temperature",
    "apply_temperature",
    "calibration",
    "evaluate_robustness",
]

CORRUPTIONS = {
    "noise": (8.0, 16.0, 32.0),
    "blur": (1.0, 2.0, 3.0),
    "brightness": (1.3, 1.6, 2.0),
    "contrast": (0.7, 0.5, 0.3),
    "jpeg": (50, 25, 10),
    "rotation": (5.0, 10.0, 15.0),
}


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupted copies of uint8 images ``(N, H, W, 3)`` (see the module docstring for the levels)."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {', '.join(CORRUPTIONS)}; received kind={kind!r}")
    if severity not in (1, 2, 3):
        raise ValueError(f"severity must be 1, 2 or 3; received severity={severity!r}")
    level = CORRUPTIONS[kind][severity - 1]
    x = np.asarray(images)
    scale = x.shape[1] / 224.0
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(x + rng.normal(0, level, x.shape), 0, 255).astype(np.uint8)
    if kind == "brightness":
        return np.clip(x.astype(np.float32) * level, 0, 255).astype(np.uint8)
    if kind == "contrast":
        m = x.reshape(len(x), -1).mean(1)[:, None, None, None]
        return np.clip((x - m) * level + m, 0, 255).astype(np.uint8)
    out = np.empty_like(x)
    for i, img in enumerate(x):
        if kind == "blur":
            out[i] = cv2.GaussianBlur(img, (0, 0), level * scale)
        elif kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(level)])
            out[i] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(img.shape)
        else:  # rotation
            h, w = img.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), level, 1.0)
            out[i] = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return out


def robustness_table(
    predict_fn,
    images: np.ndarray,
    y: np.ndarray,
    dedup: np.ndarray | None = None,
    kinds=tuple(CORRUPTIONS),
    severities=(1, 2, 3),
    seed: int = 0,
    show_progress: bool = True,
    n_boot: int = 1000,
) -> list[dict]:
    """Accuracy and macro-F1 (and their drop from clean) per corruption and severity, with bootstrap
    95% intervals: ``<metric>_lo/_hi`` for the value, ``<metric>_drop_lo/_hi`` for the drop (paired:
    the same images clean and corrupted, resampled jointly).

    ``predict_fn(images) -> probs``; rows for the clean images have kind ``clean`` and severity 0.
    """

    masks = dict(test_sets(np.zeros(len(y), bool) if dedup is None else dedup))
    if dedup is None:
        del masks["dedup"]
    y = np.asarray(y)
    clean = predict_fn(images).argmax(1)

    def row(kind: str, severity: int, t: str, pred: np.ndarray) -> dict:
        m = masks[t]
        r = {"kind": kind, "severity": severity, "test_set": t}
        for metric in ("accuracy", "macro_f1"):
            ci = bootstrap_ci(y[m], pred[m], metric, n_boot=n_boot, seed=seed)
            drop = paired_bootstrap_diff(y[m], clean[m], pred[m], metric, n_boot=n_boot, seed=seed)
            r.update(
                {
                    metric: ci["value"],
                    f"{metric}_lo": ci["lo"],
                    f"{metric}_hi": ci["hi"],
                    f"{metric}_drop": drop["diff"],
                    f"{metric}_drop_lo": drop["lo"],
                    f"{metric}_drop_hi": drop["hi"],
                }
            )
        return r

    rows = [row("clean", 0, t, clean) for t in masks]
    todo = [(k, s) for k in kinds for s in severities]
    for k, s in progress(todo, desc="corruptions", unit="setting", disable=not show_progress):
        pred = predict_fn(corrupt(images, k, s, seed)).argmax(1)
        rows += [row(k, s, t, pred) for t in masks]
    return rows


def _nll(logp: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logp / t
    z = z - z.max(1, keepdims=True)
    logsm = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logsm[np.arange(len(y)), y].mean())


def fit_temperature(probs_val: np.ndarray, y_val: np.ndarray) -> float:
    """The temperature minimising the validation negative log-likelihood (probabilities as logits)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(probs_val, np.float64), 1e-12, 1))
    res = minimize_scalar(lambda lt: _nll(logp, np.asarray(y_val), float(np.exp(lt))), bounds=(-3, 3), method="bounded")
    return float(np.exp(res.x))


def apply_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1)) / t
    logp -= logp.max(1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(1, keepdims=True)


def calibration(probs_val: np.ndarray, y_val: np.ndarray, probs_test: np.ndarray, y_test: np.ndarray) -> dict:
    """ECE and NLL on the test split before and after temperature scaling fitted on validation."""

    t = fit_temperature(probs_val, y_val)
    after = apply_temperature(probs_test, t)
    logp_b = np.log(np.clip(probs_test, 1e-12, 1))
    return {
        "temperature": t,
        "ece_before": expected_calibration_error(y_test, probs_test),
        "ece_after": expected_calibration_error(y_test, after),
        "nll_before": _nll(logp_b, y_test, 1.0),
        "nll_after": _nll(logp_b, y_test, t),
        "accuracy_unchanged": bool((after.argmax(1) == np.asarray(probs_test).argmax(1)).all()),
        "n_val": int(len(y_val)),
        "n_test": int(len(y_test)),
        "classes": list(CLASSES),
    }


def evaluate_robustness(cfg, run_dir, out_dir, *, prep=None, show_progress: bool = True) -> dict:
    """Robustness table and calibration of a trained run; writes ``robustness.json`` into ``out_dir``."""
    from pathlib import Path

    run_dir, out = Path(run_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prep = prep or prepare(cfg, show_progress=show_progress)
    model = load_model(run_dir)
    x, y = prep.images("test", show_progress), prep.labels("test")
    rows = robustness_table(
        lambda imgs: predict_images(model, imgs, cfg.data.batch_size),
        x,
        y,
        prep.dedup_mask(),
        seed=cfg.seed,
        show_progress=show_progress,
    )
    val, test = read_predictions(run_dir, "val"), read_predictions(run_dir, "test")
    cal = calibration(val.probs, val.y, test.probs, test.y)
    result = {
        "run": f"{run_dir.parent.name}/{run_dir.name}",
        "corruptions": {k: list(v) for k, v in CORRUPTIONS.items()},
        "rows": rows,
        "calibration": cal,
    }
    write_json(out / "robustness.json", result, schema="robustness")
    return result
