"""Benchmark (not a test): seconds per epoch with and without prefix caching, cpu profile, real data.

    python benchmarks/prefix_cache.py [--profile cpu] [--modules mab respath sbr] [--out benchmarks/results]

Trains one warm-up and one fine-tuning epoch both ways from the same initial weights and writes
``prefix_cache_<profile>.json``: the one-off caching time, the seconds per epoch of each phase, and
the machine it ran on. Needs the real dataset (TUMORLENS_DATA) for the cpu profile. Point
TUMORLENS_CACHE at an empty folder to time the caching itself (a warm cache turns it into a load).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tumorlens.config import load_config
from tumorlens.data import prepare
from tumorlens.models.classifier import build_classifier
from tumorlens.training.fit import train_model
from tumorlens.utils.environment import environment
from tumorlens.utils.files import write_json


def add_speedups(out: dict) -> dict:
    """Per epoch and per training sample: a cached warm-up epoch holds ``cached_views`` views of each
    image, a cached fine-tuning epoch ``finetune_views``; an uncached epoch one (freshly augmented)."""
    c, u = out["runs"]["cached"], out["runs"]["uncached"]
    views = {
        "warmup": out["cached_views"],
        "finetune": min(out["cached_views"], out.get("finetune_views") or out["cached_views"]),
    }
    out["speedup_per_epoch"] = {
        ph: round(u[f"{ph}_epoch_seconds_mean"] / c[f"{ph}_epoch_seconds_mean"], 1) for ph in ("warmup", "finetune")
    }
    out["ms_per_sample"] = {
        ph: {
            "cached": round(1000 * c[f"{ph}_epoch_seconds_mean"] / (views[ph] * out["n_train"]), 2),
            "uncached": round(1000 * u[f"{ph}_epoch_seconds_mean"] / out["n_train"], 2),
        }
        for ph in ("warmup", "finetune")
    }
    out["speedup_per_sample"] = {ph: round(v["uncached"] / v["cached"], 1) for ph, v in out["ms_per_sample"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--modules", nargs="*", default=["mab", "respath", "sbr"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    base = load_config(
        args.profile, overrides={"model.modules": args.modules, "train.warmup_epochs": 1, "train.finetune_epochs": 1}
    )
    prep = prepare(base)
    x_tr, y_tr, x_va, y_va = prep.images("train"), prep.labels("train"), prep.images("val"), prep.labels("val")
    m = base.model
    init = Path(tempfile.mkdtemp()) / "init.weights.h5"
    build_classifier(
        m.backbone, m.modules, image_size=base.data.image_size, weights=m.weights, dropout=m.dropout
    ).save_weights(init)
    out = {
        "profile": args.profile,
        "backbone": m.backbone,
        "modules": list(m.modules),
        "n_train": int(len(y_tr)),
        "n_val": int(len(y_va)),
        "cached_views": base.train.cached_views,
        "finetune_views": min(base.train.cached_views, base.train.finetune_views or base.train.cached_views),
        "finetune_layers": base.train.finetune_layers,
        "environment": environment(),
        "runs": {},
    }
    for cached in (True, False):
        cfg = base.override({"train.prefix_cache": cached})
        model = build_classifier(
            m.backbone, m.modules, image_size=cfg.data.image_size, weights="none", dropout=m.dropout
        )
        model.load_weights(init)
        t0 = time.perf_counter()
        res = train_model(model, m.backbone, x_tr, y_tr, x_va, y_va, cfg)
        out["runs"]["cached" if cached else "uncached"] = {
            "total_seconds": round(time.perf_counter() - t0, 1),
            **res.timings,
            "cut": res.cut,
            "epochs": res.history,
        }
    add_speedups(out)
    c, u = out["runs"]["cached"], out["runs"]["uncached"]
    path = write_json(Path(args.out) / f"prefix_cache_{args.profile}.json", out)
    print(f"cache once: {c['cache_seconds']} s ({base.train.cached_views} views of {len(y_tr)} images)")
    for ph, views in (("warmup", out["cached_views"]), ("finetune", out["finetune_views"])):
        print(
            f"{ph:9s} epoch: cached {c[f'{ph}_epoch_seconds_mean']:.1f} s ({views} views/image), "
            f"uncached {u[f'{ph}_epoch_seconds_mean']:.1f} s (1 view); per sample x{out['speedup_per_sample'][ph]}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
