"""Benchmarks side by side (not tests): tumorlens against the peer package ``detect-tumor``.

    tumorlens bench --profile cpu [--out results/cpu/bench.json]     # the published single model and ensemble
    tumorlens bench --profile cpu --model RUN [--ensemble RUN ...]

On the same Testing images: accuracy and macro-F1 on the official split and the de-duplicated
subset, images per second batched, and — for tumorlens — the latency of predict + map + weak mask
per image (the map and mask `tumorlens predict --segment` uses for that model). ``detect-tumor``
(PyPI; a VGG16 ONNX classifier for the same four classes, its own 240 px resize and [0, 1] scaling)
is installed by the ``bench`` extra. Its training data are
not stated by the package; if they include this dataset's Testing images, its scores are optimistic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES
from tumorlens.data.pipeline import load_images
from tumorlens.data.prepared import prepare
from tumorlens.evaluation.ensembles import soft_vote
from tumorlens.experiments import published
from tumorlens.experiments.predict import Predictor
from tumorlens.explain.weak_masks import weak_mask
from tumorlens.metrics.stats import accuracy, macro_f1
from tumorlens.models.classifier import load_model
from tumorlens.models.inference import predict_images
from tumorlens.utils.environment import environment

__all__ = ["PUBLISHED", "run_bench", "format_table"]


def _scores(y: np.ndarray, probs: np.ndarray, dedup: np.ndarray) -> dict:

    pred = probs.argmax(1)
    return {
        "official_accuracy": accuracy(y, pred),
        "official_macro_f1": macro_f1(y, pred),
        "dedup_accuracy": accuracy(y[dedup], pred[dedup]),
        "dedup_macro_f1": macro_f1(y[dedup], pred[dedup]),
    }


def _detect_tumor(paths: Sequence[Path], batch_size: int) -> tuple[np.ndarray, float, str]:
    try:
        import detect_tumor
        from detect_tumor import TumorDetector
        from detect_tumor.preprocess import preprocess
    except ImportError:
        raise RuntimeError(
            "the peer benchmark needs detect-tumor and onnxruntime: pip install 'tumorlens[bench]'"
        ) from None
    det = TumorDetector()
    session, input_name, labels = det._ensure_session()  # its own ONNX session (public predict() is one image)
    order = [next(i for i, c in labels.items() if str(getattr(c, "value", c)) == name) for name in CLASSES]
    batched = session.get_inputs()[0].shape[0] in (None, "None") or not isinstance(
        session.get_inputs()[0].shape[0], int
    )
    probs = []
    t0 = time.perf_counter()
    step = batch_size if batched else 1
    for s in range(0, len(paths), step):
        x = np.concatenate([preprocess(p) for p in paths[s : s + step]])
        probs.append(np.asarray(session.run(None, {input_name: x})[0], np.float64))
    secs = time.perf_counter() - t0
    p = np.concatenate(probs)[:, order]
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's version (the module's __version__ string lags behind it)
        installed = version("detect-tumor")
    except PackageNotFoundError:
        installed = getattr(detect_tumor, "__version__", "?")
    return p / p.sum(1, keepdims=True), secs, installed


#: ``model_run`` naming the published models (`tumorlens.experiments.published`) rather than a run folder.
PUBLISHED = "published"


def run_bench(
    cfg,
    model_run: str | Path = PUBLISHED,
    ensemble_runs: Sequence[str | Path] = (),
    *,
    batch_size: int = 32,
    latency_images: int = 32,
    peer: bool = True,
    show_progress: bool = True,
) -> dict:
    """Run the comparison; returns the result dict (see the module docstring). ``model_run`` `PUBLISHED`
    (the default): the published single model and, as the ensemble, the published soft-voting ensemble
    (each member reading the images letterboxed to its own input side, as predict does)."""

    prep = prepare(cfg, show_progress=show_progress)
    recs = prep.splits["test"]
    x, y, dedup = prep.images("test", show_progress), prep.labels("test"), prep.dedup_mask()
    systems = {}
    if str(model_run) == PUBLISHED:
        return _bench_published(cfg, prep, x, y, dedup, batch_size, latency_images, peer, show_progress)
    model = load_model(model_run)
    predict_images(model, x[:batch_size], batch_size)  # warm-up
    t0 = time.perf_counter()
    p_single = predict_images(model, x, batch_size)
    secs = time.perf_counter() - t0
    systems["tumorlens (single model)"] = {
        **_scores(y, p_single, dedup),
        "images_per_second": len(x) / secs,
        "model": paths.relative(model_run),
    }
    if ensemble_runs:
        members = [load_model(r) for r in ensemble_runs]
        for m in members:
            predict_images(m, x[:batch_size], batch_size)  # warm-up
        t0 = time.perf_counter()
        p_ens = soft_vote([predict_images(m, x, batch_size) for m in members])
        secs = time.perf_counter() - t0
        systems["tumorlens (soft-voting ensemble)"] = {
            **_scores(y, p_ens, dedup),
            "images_per_second": len(x) / secs,
            "members": [paths.relative(r) for r in ensemble_runs],
        }
    # latency of predict + map + mask, one image at a time, as `tumorlens predict --segment` runs it
    ms, label = _latency(Predictor.load(model_run), x, latency_images)
    systems["tumorlens (single model)"] |= {"explain_segment_ms_median": ms, "map_and_mask": label}
    return _with_peer(cfg, systems, recs, y, dedup, batch_size, peer)


def _with_peer(cfg, systems: dict, recs, y, dedup, batch_size: int, peer: bool) -> dict:
    """The result: ``systems`` plus the peer package on the same images (``peer``)."""
    if peer:
        p_peer, secs, version = _detect_tumor([r.path for r in recs], batch_size)
        systems[f"detect-tumor {version} (VGG16 ONNX)"] = {
            **_scores(y, p_peer, dedup),
            "images_per_second": len(y) / secs,
        }
    return {
        "profile": cfg.profile,
        "n_test": int(len(y)),
        "n_dedup": int(dedup.sum()),
        "systems": systems,
        "environment": environment(),
    }


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _latency(predictor, x: np.ndarray, n: int) -> tuple[float, str]:
    """Median ms of predict + map + mask, one image at a time, as `tumorlens predict --segment` runs it."""
    sg = predictor.segmentation
    predictor.predict(x[:1], explain=True, segment=True)
    lat = []
    for i in range(min(n, len(x))):
        t0 = time.perf_counter()
        probs, _, maps = predictor.predict(x[i : i + 1], explain=True, segment=True)
        weak_mask(x[i], maps[0], CLASSES[int(probs[0].argmax())], sg.params, sg.mask)
        lat.append(time.perf_counter() - t0)
    return 1000 * float(np.median(lat)), sg.label


def _bench_published(cfg, prep, x, y, dedup, batch_size, latency_images, peer, show_progress) -> dict:
    mf = published.read_manifest(cfg.profile)
    single = Predictor.published(profile=cfg.profile)
    ens = Predictor.published(ensemble=True, profile=cfg.profile)
    # the single model and every member read the Testing images letterboxed to their own side (x is at the
    # profile's side), as predict does
    by_side = {
        s: x if s == cfg.data.image_size else load_images(prep.splits["test"], s, show_progress=False)
        for s in sorted({single.image_size, *ens.input_sides})
    }
    x1 = by_side[single.image_size]
    predict_images(single.model, x1[:batch_size], batch_size)  # warm-up
    p_single, secs = _timed(lambda: predict_images(single.model, x1, batch_size))
    ms, label = _latency(single, x1, latency_images)
    systems = {
        "tumorlens (single model)": {
            **_scores(y, p_single, dedup),
            "images_per_second": len(x) / secs,
            "model": f"published:{mf['single']}",
            "explain_segment_ms_median": ms,
            "map_and_mask": label,
        }
    }
    ens.predict(x[:batch_size], by_side={s: v[:batch_size] for s, v in by_side.items()})  # warm-up
    (p_ens, _, _), secs = _timed(lambda: ens.predict(x, by_side=by_side))
    systems["tumorlens (soft-voting ensemble)"] = {
        **_scores(y, p_ens, dedup),
        "images_per_second": len(x) / secs,
        "members": [f"published:{n}" for n in mf["ensemble"]],
    }
    return _with_peer(cfg, systems, prep.splits["test"], y, dedup, batch_size, peer)


def format_table(res: dict) -> str:
    head = f"{'system':44s}{'acc':>8s}{'F1':>8s}{'acc dedup':>11s}{'F1 dedup':>10s}{'img/s':>8s}{'map+mask ms':>16s}"
    lines = [head, "-" * len(head)]
    for name, s in res["systems"].items():
        ms = s.get("explain_segment_ms_median")
        lines.append(
            f"{name:44s}{s['official_accuracy']:8.4f}{s['official_macro_f1']:8.4f}{s['dedup_accuracy']:11.4f}"
            f"{s['dedup_macro_f1']:10.4f}{s['images_per_second']:8.1f}{'' if ms is None else f'{ms:.0f}':>16s}"
        )
    lines.append(f"({res['n_test']} official Testing images, {res['n_dedup']} de-duplicated)")
    return "\n".join(lines)
