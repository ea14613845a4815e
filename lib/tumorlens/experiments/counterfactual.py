"""Counterfactual training: the lesions of the training images, marked by the published weak masks.

    masks = published_lesion_masks(cfg, prep)       # the train split's tumour images, cached on disk
    train(cfg, run_dir)                              # train_run with them when train.counterfactual is on

The published single model's weak-mask network (`tumorlens.experiments.published`) draws each tumour
training image's lesion for its *labelled* class, binarised as `tumorlens predict --segment` does
(the published ``segment.json``) -- the copy of both pinned in ``models/<profile>/lesion_masks/``
(`published.pin_lesion_masks`) when there is one, so a later explain step can republish the network
without moving the study's training data. Each mask carries confidence scores (`CONFIDENCE`); the training
recipe keeps the most confident share (``train.counterfactual.keep``). How a confidence filter trades
the count of masks against their Dice is measured on the expert masks (`mask_filter_curve`: the
tuning half chooses, the report half reports), never on the training images themselves.

The masks are made once per published mask recipe and training split and cached under
``$TUMORLENS_CACHE/lesion-masks/`` (packed bits; the key names the published files' sha256, the split's
files and the image size), so every counterfactual run of a profile shares them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, Config, load_config
from tumorlens.data.lesion import dilate
from tumorlens.data.prepared import prepare
from tumorlens.experiments import published
from tumorlens.experiments.predict import Segmentation
from tumorlens.explain.ground_truth import brisc_items, default_mask_root, load_lesion_masks, split_items
from tumorlens.explain.refine import mask_probabilities
from tumorlens.explain.weak_masks import weak_mask
from tumorlens.metrics.segmentation import dice
from tumorlens.training.run import train_run
from tumorlens.utils.files import cached, hash_files, save_npz
from tumorlens.utils.progress import progress

__all__ = ["CONFIDENCE", "LesionMasks", "weak_lesion_masks", "published_lesion_masks", "mask_filter_curve", "train"]

#: Per-mask confidence scores: the network's mean probability inside the mask (``p_in``) and its peak
#: over the image (``peak``).
CONFIDENCE = ("p_in", "peak")


@dataclass
class LesionMasks:
    """Weak lesion masks of a split's tumour images: ``index`` into the split, ``masks`` bool
    ``(N, S, S)``, ``scores`` per `CONFIDENCE` name ``(N,)``, and what made them."""

    index: np.ndarray
    masks: np.ndarray
    scores: dict[str, np.ndarray]
    source: dict

    def trusted(self, keep: float, score: str = "p_in") -> dict[int, np.ndarray]:
        """``{split index: mask}`` of the ``keep`` share with the highest ``score`` (non-empty masks only)."""
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1]; received keep={keep!r}")
        if score not in self.scores:
            raise ValueError(f"score must be one of {', '.join(self.scores)}; received score={score!r}")
        nonempty = self.masks.reshape(len(self.masks), -1).any(axis=1)
        cand = np.flatnonzero(nonempty)
        order = cand[np.argsort(-self.scores[score][cand], kind="stable")]
        take = order[: int(round(keep * len(cand)))]
        return {int(self.index[j]): self.masks[j] for j in sorted(take)}


def weak_lesion_masks(
    images: np.ndarray,
    labels: Sequence[int],
    segmenter,
    params,
    kind: str = "cam",
    *,
    flip: bool = False,
    batch_size: int = 32,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The weak mask of each image for its labelled class (``labels``, class indices; tumour classes),
    from the weak-mask network's map binarised as predict does, and the confidence scores.

    ``images`` uint8 ``(N, S, S, 3)`` -> ``(masks bool (N, S, S), {score: (N,)})``."""
    images = np.asarray(images)
    labels = np.asarray(labels, int)
    masks = np.zeros(images.shape[:3], bool)
    scores = {k: np.zeros(len(images), np.float32) for k in CONFIDENCE}
    for s in progress(
        range(0, len(images), batch_size),
        total=-(-len(images) // batch_size),
        desc="weak lesion masks",
        unit="batch",
        disable=not show_progress,
    ):
        x, yb = images[s : s + batch_size], labels[s : s + batch_size]
        _, maps = mask_probabilities(segmenter, x, batch_size, flip=flip, class_index=yb)
        for j, (img, prob, c) in enumerate(zip(x, maps, yb)):
            m = weak_mask(img, prob, CLASSES[int(c)], params, kind)
            masks[s + j] = m
            scores["p_in"][s + j] = float(prob[m].mean()) if m.any() else 0.0
            scores["peak"][s + j] = float(prob.max())
    return masks, scores


def _published_source(profile: str) -> dict:
    """What made the masks (the cache key and the runs' record): the pinned lesion-mask source
    (`published.pin_lesion_masks`), else the published weak-mask network."""
    src = published.lesion_masks_source(profile)
    return {"model": src["made_for"], "model_sha256": src["model_sha256"], "segmenter_sha256": src["entry"]["sha256"]}


def _segmentation(profile: str):
    single, segmenter, src = published.load_lesion_segmenter(profile)
    return single, segmenter, Segmentation.read(src["dir"])


def published_lesion_masks(
    cfg: Config, prep=None, split: str = "train", *, profile: str | None = None, show_progress: bool = True
) -> LesionMasks:
    """The published weak masks of ``split``'s tumour images at ``cfg.data.image_size`` (cached)."""
    profile = profile or published.PUBLISHED_PROFILE
    prep = prep or prepare(cfg, show_progress=show_progress)
    source = _published_source(profile)
    y = prep.labels(split)
    idx = np.flatnonzero(y != CLASSES.index("notumor"))
    size = cfg.data.image_size
    h = hashlib.sha1(f"{source}|{size}|{split}".encode())
    hash_files(h, ((r.rel, r.path) for r in prep.splits[split]))
    file = paths.cache_root() / "lesion-masks" / f"{h.hexdigest()[:20]}-{size}px.npz"

    def compute():
        single, segmenter, seg = _segmentation(profile)
        x = prep.images(split, show_progress)[idx]
        masks, scores = weak_lesion_masks(
            x, y[idx], segmenter, seg.params, seg.mask, flip=seg.network_flip, show_progress=show_progress
        )
        return {"index": idx, "bits": np.packbits(masks, axis=-1), **{f"score_{k}": v for k, v in scores.items()}}

    def load(f: Path):
        with np.load(f) as z:
            return {k: z[k] for k in z.files}

    z = cached(file, load, compute, lambda f, v: save_npz(f, **v))
    masks = np.unpackbits(z["bits"], axis=-1, count=size).astype(bool)
    scores = {k: z[f"score_{k}"] for k in CONFIDENCE}
    return LesionMasks(z["index"], masks, scores, {**source, "split": split, "image_size": size, "key": file.stem})


def mask_filter_curve(
    profile: str | None = None,
    masks_root: str | Path | None = None,
    *,
    keeps: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    dilations: Sequence[float] = (0.03, 0.05, 0.08, 0.12),
    seed: int = 42,
    tune_fraction: float = 0.5,
    show_progress: bool = True,
) -> dict:
    """How a confidence filter trades count against Dice, on expert masks (BRISC layout): the published
    weak mask of each image for its true class, scored against the expert's, and per `CONFIDENCE` score
    the mean Dice of the ``keep`` most confident masks, on the tuning half and the report half
    (`tumorlens.explain.ground_truth.split_items`), and what matters for a counterfactual: the share of
    the expert lesion the mask covers once dilated by each of ``dilations`` (``coverage``, its mean) and
    the share of masks that cover at least 90% of it (``covered``). The masks are for measuring only."""
    profile = profile or published.PUBLISHED_PROFILE
    cfg = load_config(profile)
    root = Path(masks_root) if masks_root else default_mask_root(cfg)
    if root is None:
        raise FileNotFoundError("no expert masks (segment.masks, TUMORLENS_MASKS or --masks DIR)")
    single, segmenter, seg = _segmentation(profile)
    size = int(single.inputs[0].shape[1])
    ids, images, truth, y, views = load_lesion_masks(root, size, show_progress=show_progress)
    masks, scores = weak_lesion_masks(
        images, y, segmenter, seg.params, seg.mask, flip=seg.network_flip, show_progress=show_progress
    )
    d = np.array([dice(m, t) for m, t in zip(masks, truth)])
    cover = {
        dl: np.array([(dilate(m, dl) & t).sum() / max(1, t.sum()) for m, t in zip(masks, truth)]) for dl in dilations
    }
    tune, report = split_items(brisc_items(root), tune_fraction, seed)
    halves = {"tune": {it.id for it in tune}, "report": {it.id for it in report}}
    out = {"set": root.name, "n": len(ids), "image_size": size, "source": _published_source(profile), "halves": {}}
    for half, members in halves.items():
        sel = np.array([i in members for i in ids])
        rows = {}
        for k in CONFIDENCE:
            order = np.argsort(-scores[k][sel], kind="stable")
            dd = d[sel][order]
            cls = y[sel][order]
            cov = {dl: c[sel][order] for dl, c in cover.items()}
            rows[k] = []
            for q in keeps:
                n = max(1, int(round(q * len(dd))))
                per_class = {CLASSES[c]: float(dd[:n][cls[:n] == c].mean()) for c in sorted(set(cls[:n].tolist()))}
                rows[k].append(
                    {
                        "keep": q,
                        "n": n,
                        "dice": float(dd[:n].mean()),
                        "dice_per_class": per_class,
                        "coverage": {str(dl): float(c[:n].mean()) for dl, c in cov.items()},
                        "covered": {str(dl): float((c[:n] >= 0.9).mean()) for dl, c in cov.items()},
                    }
                )
        out["halves"][half] = {"n": int(sel.sum()), "scores": rows}
    return out


def train(cfg: Config, run_dir: str | Path | None = None, *, prep=None, show_progress: bool = True, **kw) -> dict:
    """`tumorlens.training.run.train_run`, with the published weak lesion masks of the training split
    when ``train.counterfactual.share`` is on (made or read from the cache first)."""
    cf = cfg.train.counterfactual
    lesions = None
    if cf.share > 0:
        prep = prep or prepare(cfg, show_progress=show_progress)
        lesions = published_lesion_masks(cfg, prep, "train", show_progress=show_progress)
    val = published_lesion_masks(cfg, prep, "val", show_progress=show_progress) if cf.share and cf.validation else None
    return train_run(cfg, prep, run_dir, show_progress=show_progress, lesion_masks=lesions, val_lesion_masks=val, **kw)
