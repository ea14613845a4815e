"""The input-validity guard of `tumorlens predict`: is this image one the model can be trusted on?

Four checks, each a reason when it fails; an image with any reason is flagged ``warning`` (else
``valid``) in ``predictions.csv`` and its JSON -- its class is still given, never silently:

* **non-finite pixels**: NaN or infinite values in the decoded file (float TIFF, DICOM); the reader sets
  them to black and counts them (`tumorlens.data.io.decode`);
* **blank or near-constant**: the decoded image's grey levels span less than `MIN_SPREAD` between their
  1st and 99th percentiles (an all-black or all-grey image holds no anatomy);
* **bright background**: the median grey level of the image's outer frame (`background_level`; MRI slices
  lie on black, an inverted or photographed image does not) above its threshold;
* **outside the training distribution**: the pooled features before the classifier's head (the input of
  its ``predictions`` layer, ``D`` values) scored by a Gaussian model of the training images' features --
  the class means and a shared within-class covariance, kept as its top ``k`` principal directions plus one
  isotropic variance for the rest (probabilistic PCA, so it stays small: ``D x k`` numbers). The score is
  the smallest squared Mahalanobis distance to a class mean.

The two measured criteria (background, features) each have their threshold at their quantile on the Kaggle
**validation** split at a stated false-alarm rate (`fit_guard`), never chosen on test or external data;
the pixel checks are fixed (no Kaggle, Testing or BRISC image fails them: benchmarks/guard.py).

The statistics are stored as ``.npz`` (arrays) with a JSON header inside -- no pickle -- and published
beside the models (`tumorlens.experiments.published.load_guard`); `benchmarks/guard.py` fits them and
measures the false-alarm and catch rates the README reports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tumorlens.errors import TumorlensError
from tumorlens.utils.files import atomic_path

__all__ = [
    "MIN_SPREAD",
    "BORDER",
    "GuardError",
    "background_level",
    "GuardStats",
    "fit_guard",
    "image_reasons",
    "Verdict",
    "verdicts",
]

#: Grey levels (of 255) the 1st-99th percentile range of an image must span; below it the image is
#: called blank (one value) or near-constant. An MRI slice spans most of the range (head vs background).
MIN_SPREAD = 8.0

#: Pixels sampled for the spread (a regular subsample of larger images: the percentiles barely move).
_SPREAD_PIXELS = 1 << 20

#: The outer frame `background_level` reads: this share of each side.
BORDER = 0.04

_FORMAT = "tumorlens-guard"
_VERSION = 1


class GuardError(TumorlensError, ValueError):
    """A guard file that cannot be read or does not fit the model it is used with."""


def image_reasons(image: np.ndarray, n_nonfinite: int = 0) -> list[str]:
    """The reasons (in words) a decoded ``uint8 (H, W, C)`` image fails the pixel checks; ``[]`` when it passes.

    ``n_nonfinite``: how many of its pixels were NaN or infinite in the file (set to black by the reader).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, C) and not empty; received shape {image.shape}")
    reasons = []
    if n_nonfinite:
        n = image.shape[0] * image.shape[1]
        reasons.append(f"non-finite pixels: {n_nonfinite} of {n} were NaN or infinite (set to black)")
    g = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    step = max(1, int(np.sqrt(g.size / _SPREAD_PIXELS)))
    g = g[::step, ::step]
    lo, hi = np.percentile(g, [1, 99])
    if g.max() == g.min():
        reasons.append(f"blank image: every pixel is {g.max():.0f}")
    elif hi - lo < MIN_SPREAD:
        reasons.append(
            f"near-constant image: its grey levels span {hi - lo:.1f} of 255 (1st-99th percentile; "
            f"at least {MIN_SPREAD:g} expected)"
        )
    return reasons


def background_level(image: np.ndarray) -> float:
    """The median grey level (0-255) of the outer frame of a decoded image (`BORDER` of each side)."""
    image = np.asarray(image)
    g = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    h, w = g.shape
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    frame = np.concatenate([g[:bh].ravel(), g[-bh:].ravel(), g[:, :bw].ravel(), g[:, -bw:].ravel()])
    return float(np.median(frame))


@dataclass(frozen=True)
class GuardStats:
    """A fitted out-of-distribution model of pooled features (see the module docstring).

    Shapes: ``class_means (C, D)``, ``components (D, k)`` orthonormal columns, ``variances (k,)`` the
    within-class variance along each, ``residual_variance`` the mean variance of the other ``D - k``
    directions; ``threshold`` on `score`; ``background_threshold`` on `background_level` (inf: not checked).
    """

    class_means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    info: dict = field(default_factory=dict)  # model, false-alarm rate, the data it was fitted and set on
    background_threshold: float = np.inf

    @property
    def dim(self) -> int:
        return int(self.class_means.shape[1])

    def score(self, features: np.ndarray) -> np.ndarray:
        """``(N,)`` smallest squared Mahalanobis distance of ``features (N, D)`` to a class mean."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise GuardError(f"features must be (N, {self.dim}); received shape {f.shape}")
        p = self.components.astype(np.float64)
        best = np.full(len(f), np.inf)
        for mu in self.class_means.astype(np.float64):
            d = f - mu
            z = d @ p  # (N, k): along the principal directions
            resid = np.einsum("nd,nd->n", d, d) - np.einsum("nk,nk->n", z, z)  # the rest, squared
            m = (z**2 / self.variances).sum(1) + np.maximum(resid, 0) / self.residual_variance
            best = np.minimum(best, m)
        return best

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (.npz, float32 arrays and a JSON header; no pickle), atomically."""
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "residual_variance": float(self.residual_variance),
            "threshold": float(self.threshold),
            "background_threshold": float(self.background_threshold),
            "info": self.info,
        }
        with atomic_path(path, ".npz") as tmp:
            np.savez_compressed(  # float16: the file must fit the published models' size budget
                tmp,
                header=np.array(json.dumps(header, sort_keys=True)),
                class_means=self.class_means.astype(np.float16),
                components=self.components.astype(np.float16),
                variances=self.variances.astype(np.float32),
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GuardStats":
        """Read a file written by `save`; `GuardError` naming the file when it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in ("class_means", "components", "variances")}
        except (OSError, ValueError, KeyError) as exc:
            raise GuardError(f"{path}: not a guard statistics file ({type(exc).__name__}: {exc})") from None
        if header.get("format") != _FORMAT or header.get("version") != _VERSION:
            raise GuardError(
                f"{path}: guard file format {header.get('format')!r} version {header.get('version')!r}; "
                f"this tumorlens reads {_FORMAT!r} version {_VERSION} (refit it: benchmarks/guard.py --write)"
            )
        c, p, v = (arrays[k].astype(np.float64) for k in ("class_means", "components", "variances"))
        if (
            p.ndim != 2
            or c.ndim != 2
            or p.shape[0] != c.shape[1]
            or v.shape != (p.shape[1],)
            or p.shape[1] >= p.shape[0]
        ):
            raise GuardError(f"{path}: inconsistent shapes {c.shape}, {p.shape}, {v.shape}")
        if not (np.isfinite(c).all() and np.isfinite(p).all() and (v > 0).all()):
            raise GuardError(f"{path}: non-finite statistics or non-positive variances")
        p = _orthonormal(p)
        return cls(
            c,
            p,
            v,
            float(header["residual_variance"]),
            float(header["threshold"]),
            header.get("info", {}),
            float(header["background_threshold"]),
        )


def _as_stored(a: np.ndarray) -> np.ndarray:
    """``a`` as `GuardStats.save` stores it (float16), back in float64."""
    return np.asarray(a, np.float16).astype(np.float64)


def _orthonormal(p: np.ndarray) -> np.ndarray:
    """Columns made orthonormal again after float16 storage (the same subspace, the same signs)."""
    q, r = np.linalg.qr(p)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def fit_guard(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_backgrounds: np.ndarray | None = None,
    *,
    k: int = 16,
    false_alarm: float = 0.01,
    info: dict | None = None,
) -> GuardStats:
    """Fit the Gaussian model on ``train_features (N, D)`` with ``train_labels (N,)`` and set each
    threshold at the ``1 - false_alarm`` quantile of the validation images' values: their feature scores
    (``val_features (M, D)``) and their `background_level` (``val_backgrounds (M,)``; None: not checked).

    Args:
        k: principal directions kept (``1 <= k < D``); the stored file holds ``D x k`` float16 numbers
            (16 at D = 1280: 41 KB, inside the published models' size budget).
        false_alarm: the share of validation images (in distribution) the threshold flags, in (0, 0.5).
    """
    x = np.asarray(train_features, np.float64)
    y = np.asarray(train_labels)
    v = np.asarray(val_features, np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"train_features (N, D) and train_labels (N,) must agree; received {x.shape} and {y.shape}")
    if v.ndim != 2 or v.shape[1] != x.shape[1] or len(v) == 0:
        raise ValueError(f"val_features must be (M, {x.shape[1]}); received shape {v.shape}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k < x.shape[1]:
        raise ValueError(f"k must be an integer in [1, {x.shape[1] - 1}]; received k={k!r}")
    if not (isinstance(false_alarm, (int, float)) and 0 < false_alarm < 0.5):
        raise ValueError(f"false_alarm must be a number in (0, 0.5); received false_alarm={false_alarm!r}")
    if not (np.isfinite(x).all() and np.isfinite(v).all()):
        raise ValueError("features must be finite")
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / max(len(x) - len(classes), 1)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.maximum(eigval[order], 0), eigvec[:, order]
    tiny = 1e-12 * max(float(eigval[0]), 1e-30)
    resid = max(float(eigval[k:].mean()), tiny)
    means, comps = _as_stored(means), _orthonormal(_as_stored(eigvec[:, :k]))  # thresholds fit what is stored
    stats = GuardStats(means, comps, np.maximum(eigval[:k], tiny), resid, np.inf, {})
    val_scores = stats.score(v)
    threshold = float(np.quantile(val_scores, 1 - false_alarm))
    bg_threshold = np.inf
    if val_backgrounds is not None:
        b = np.asarray(val_backgrounds, np.float64)
        if b.shape != (len(v),) or not np.isfinite(b).all():
            raise ValueError(f"val_backgrounds must be ({len(v)},) finite levels; received shape {b.shape}")
        bg_threshold = float(np.quantile(b, 1 - false_alarm))
    flagged = val_scores > threshold
    if val_backgrounds is not None:
        flagged = flagged | (b > bg_threshold)
    meta = {
        "k": int(k),
        "dim": int(x.shape[1]),
        "classes": [int(c) for c in classes],
        "false_alarm_target": float(false_alarm),
        "false_alarm_validation": float(flagged.mean()),
        "n_train": int(len(x)),
        "n_validation": int(len(v)),
        **(info or {}),
    }
    return GuardStats(means, comps, np.maximum(eigval[:k], tiny), resid, threshold, meta, bg_threshold)


@dataclass(frozen=True)
class Verdict:
    """One image's guard result: ``status`` is ``valid`` or ``warning``; ``reasons`` in words."""

    status: str
    reasons: tuple[str, ...]
    score: float | None  # the out-of-distribution score (None without guard statistics)
    threshold: float | None

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "ood_score": self.score,
            "threshold": self.threshold,
        }


def verdicts(
    pixel_reasons: list[list[str]],
    features: np.ndarray | None = None,
    stats: GuardStats | None = None,
    backgrounds: list[float] | None = None,
) -> list[Verdict]:
    """Combine each image's pixel reasons (`image_reasons`) with the measured criteria of ``stats``: its
    `background_level` (``backgrounds``) and its feature score (on ``features (N, D)``). Without ``stats``
    only the pixel reasons count, and no verdict claims more was checked."""
    n = len(pixel_reasons)
    scores = stats.score(features) if stats is not None else [None] * n
    bgs = list(backgrounds) if backgrounds is not None else [None] * n
    if len(scores) != n or len(bgs) != n:
        raise ValueError(f"{n} images but {len(scores)} feature rows and {len(bgs)} background levels")
    out = []
    for reasons, s, bg in zip(pixel_reasons, scores, bgs):
        r = list(reasons)
        if stats is not None and bg is not None and bg > stats.background_threshold:
            r.append(
                f"bright background: the image's border has median grey level {bg:.0f}, above "
                f"{stats.background_threshold:.0f} (MRI slices lie on black: inverted contrast, or not a scan?)"
            )
        if s is not None and not np.isfinite(s):
            r.append("the model's features are not finite")
        elif s is not None and s > stats.threshold:
            r.append(
                f"outside the training distribution: feature score {s:.1f} above the guard threshold "
                f"{stats.threshold:.1f} (set at {100 * stats.info.get('false_alarm_target', 0):g}% false alarms "
                "on the validation split)"
            )
        out.append(
            Verdict(
                "warning" if r else "valid",
                tuple(r),
                None if s is None else float(s),
                None if stats is None else float(stats.threshold),
            )
        )
    return out
