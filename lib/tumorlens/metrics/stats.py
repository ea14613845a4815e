"""Statistics behind every comparison: bootstrap CIs, McNemar's test, multi-seed summaries.

- `bootstrap_ci`: percentile bootstrap 95% CI of accuracy or macro-F1 on one test set;
- `paired_bootstrap_diff`: CI of the difference between two systems on the *same* images
  (resampling images jointly, so the pairing is kept);
- `mcnemar`: McNemar's test on the discordant pairs (exact binomial when they are few, else
  chi-square with continuity correction);
- `bootstrap_mean`, `paired_mean_diff`: the same for per-image scores (Dice, pointing hits);
- `seed_summary`: mean ± sd over seeds;
- `compare`: one table row per research-question comparison (systems, difference, CI, p-value).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = [
    "accuracy",
    "macro_f1",
    "METRICS",
    "bootstrap_ci",
    "paired_bootstrap_diff",
    "mcnemar",
    "bootstrap_mean",
    "paired_mean_diff",
    "seed_summary",
    "compare",
]


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(pred))) if len(y) else float("nan")


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int = len(CLASSES)) -> float:
    """Macro-F1 over all ``n_classes`` (a class absent from both y and pred counts as F1 0, as sklearn)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if not len(y):
        return float("nan")
    f1s = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        denom = 2 * tp + fp + fn
        f1s.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(f1s))


METRICS: dict[str, Callable] = {"accuracy": accuracy, "macro_f1": macro_f1}


def _metric(name: str) -> Callable:
    if name not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; received metric={name!r}")
    return METRICS[name]


def _resampled(name: str, y: np.ndarray, pred: np.ndarray, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``metric(y[i], pred[i])`` for every row ``i`` of the resample indices ``idx (n_boot, n)``, computed
    for many rows at once (per-resample confusion counts by ``np.bincount``): the values of the plain loop,
    exactly, at a fraction of its time. Labels that are not class indices (``0..len(CLASSES)-1``) take the loop."""
    f, k = _metric(name), len(CLASSES)
    ints = np.issubdtype(y.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)
    if not len(y) or not ints or min(y.min(), pred.min()) < 0 or max(y.max(), pred.max()) >= k:
        return np.array([f(y[i], pred[i]) for i in idx])
    out = []
    for s in range(0, len(idx), chunk):
        rows = idx[s : s + chunk]
        yy, pp = y[rows], pred[rows]
        if name == "accuracy":
            out.append(np.mean(yy == pp, axis=1))
            continue
        codes = (np.arange(len(rows))[:, None] * k + yy) * k + pp
        cm = np.bincount(codes.ravel(), minlength=len(rows) * k * k).reshape(len(rows), k, k)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        denom = cm.sum(axis=1) + cm.sum(axis=2)  # (tp + fp) + (tp + fn)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(denom == 0, 0.0, 2 * tp / denom)
        out.append(np.mean(f1, axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def bootstrap_ci(
    y: Sequence[int],
    pred: Sequence[int],
    metric: str = "accuracy",
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap CI: ``{"value", "lo", "hi", "n", "n_boot"}``."""
    f = _metric(metric)
    y, pred = np.asarray(y), np.asarray(pred)
    n = len(y)
    if n == 0:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0, "n_boot": n_boot}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (n_boot, n))
    vals = _resampled(metric, y, pred, idx)
    a = (1 - level) / 2
    return {
        "value": f(y, pred),
        "lo": float(np.quantile(vals, a)),
        "hi": float(np.quantile(vals, 1 - a)),
        "n": int(n),
        "n_boot": n_boot,
    }


def paired_bootstrap_diff(
    y: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    metric: str = "accuracy",
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """CI of ``metric(a) - metric(b)`` on the same images, resampled jointly."""
    f = _metric(metric)
    y, a, b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"y, pred_a and pred_b must have one entry per image; received {len(y)}, {len(a)}, {len(b)}")
    n = len(y)
    if n == 0:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (n_boot, n))
    d = _resampled(metric, y, a, idx) - _resampled(metric, y, b, idx)
    q = (1 - level) / 2
    return {"diff": f(y, a) - f(y, b), "lo": float(np.quantile(d, q)), "hi": float(np.quantile(d, 1 - q)), "n": int(n)}


def mcnemar(y: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int], *, exact: bool | None = None) -> dict:
    """McNemar's test of two classifiers on the same images.

    ``b`` = images only A gets right, ``c`` = only B. Exact two-sided binomial test on ``b`` of
    ``b + c`` when ``exact`` (default: when ``b + c < 25``), else the chi-square statistic with
    continuity correction, ``(|b - c| - 1)^2 / (b + c)``, on 1 degree of freedom.
    """
    y, a, b_ = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    ra, rb = a == y, b_ == y
    b, c = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    return mcnemar_from_counts(b, c, exact=exact)


def mcnemar_from_counts(b: int, c: int, *, exact: bool | None = None, correction: bool = True) -> dict:
    """McNemar's test from the discordant counts ``b`` and ``c`` (see `mcnemar`)."""
    from scipy import stats as st

    n = b + c
    if n == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "no discordant pairs"}
    use_exact = n < 25 if exact is None else exact
    if use_exact:
        p = float(st.binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": min(1.0, p), "method": "exact binomial"}
    stat = (abs(b - c) - (1 if correction else 0)) ** 2 / n
    return {
        "b": b,
        "c": c,
        "statistic": float(stat),
        "p_value": float(st.chi2.sf(stat, 1)),
        "method": "chi-square" + (" with continuity correction" if correction else ""),
    }


def bootstrap_mean(values: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of per-image scores with its percentile bootstrap CI: ``{"value", "lo", "hi", "n"}``
    (NaN for no values)."""
    v = np.asarray(values, float)
    if not len(v):
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    q = (1 - level) / 2
    return {
        "value": float(v.mean()),
        "lo": float(np.quantile(means, q)),
        "hi": float(np.quantile(means, 1 - q)),
        "n": int(len(v)),
    }


def paired_mean_diff(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """``mean(a) - mean(b)`` over the same images with its paired bootstrap CI: ``{"diff", "lo", "hi", "n"}``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same images; received {a.shape} and {b.shape}")
    r = bootstrap_mean(a - b, n_boot=n_boot, level=level, seed=seed)
    return {"diff": r["value"], "lo": r["lo"], "hi": r["hi"], "n": r["n"]}


def seed_summary(values: Sequence[float]) -> dict:
    """``{"mean", "sd", "n", "values"}`` (sample standard deviation; sd is NaN for one seed)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], float)
    return {
        "mean": float(v.mean()) if len(v) else float("nan"),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
        "n": int(len(v)),
        "values": v.tolist(),
    }


def compare(
    name_a: str,
    name_b: str,
    y: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    *,
    metric: str = "accuracy",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """One comparison row: the two systems, each one's metric, the difference with its paired
    bootstrap CI, and McNemar's p-value."""
    f = _metric(metric)
    d = paired_bootstrap_diff(y, pred_a, pred_b, metric, n_boot=n_boot, seed=seed)
    m = mcnemar(y, pred_a, pred_b)
    return {
        "a": name_a,
        "b": name_b,
        "metric": metric,
        "n": d["n"],
        "value_a": f(np.asarray(y), np.asarray(pred_a)),
        "value_b": f(np.asarray(y), np.asarray(pred_b)),
        "diff": d["diff"],
        "ci_lo": d["lo"],
        "ci_hi": d["hi"],
        "p_mcnemar": m["p_value"],
        "mcnemar_b": m["b"],
        "mcnemar_c": m["c"],
    }
