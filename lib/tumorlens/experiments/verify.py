"""Did a rerun reproduce the paper? Retrain one published recipe and compare it with the published record.

    tumorlens verify --profile cpu [--recipe efficientnet_lite0+sbr/seed-42]

The rerun is trained with today's code and settings into ``runs/<profile>/verify/<variant>/seed-<n>``
(never over the run it checks) and compared with ``results/<profile>/variants/<variant>/seed-<n>``:
the differences in accuracy and macro-F1 on the official split and on its de-duplicated subset, the
share of test images that get the same class, and whether every difference lies inside the
**published seed spread** -- the range (max - min) over model seeds of the same recipe, or, for a
recipe published with one seed, the widest range of any recipe published with several (said so in
the record). Reruns on one machine are bit-identical (``train.deterministic``); another machine may
differ by its CPU (instruction set, core count), and the record names both CPUs.

The record is written to ``results/<profile>/verify.json`` (listed in the results manifest); the
book's reproduction section reads it. The command exits non-zero when the rerun lies outside.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tumorlens import paths, records
from tumorlens.config import load_config
from tumorlens.experiments.collect import MANIFEST, results_dir, write_manifest
from tumorlens.experiments.counterfactual import train as train_run
from tumorlens.experiments.jobs import plan
from tumorlens.experiments.published import MANIFEST as MODELS_MANIFEST
from tumorlens.experiments.published import models_dir
from tumorlens.utils.files import read_json, write_json

__all__ = ["seed_spread", "compare_runs", "recipe_overrides", "verify", "format_verify"]

_KEYS = ("accuracy", "macro_f1")


def _split_name(name: str) -> tuple[str, int]:
    variant, _, seed = name.rpartition("/seed-")
    if not variant or not seed.isdigit():
        raise ValueError(f"a recipe is <variant>/seed-<n>, e.g. efficientnet_lite0+sbr/seed-42; received {name!r}")
    return variant, int(seed)


def seed_spread(models: dict, variant: str) -> dict:
    """The published seed spread for ``variant``: ``{"source", "seeds", "official"/"dedup": {metric: range}}``.

    ``models`` is ``summary.json``'s ``models`` (``"<variant>/seed-<n>" -> official/dedup metrics``).
    """
    by_variant: dict[str, list[dict]] = {}
    for name, m in models.items():
        v, _ = _split_name(name)
        by_variant.setdefault(v, []).append(m)

    def spread(rows: list[dict]) -> dict:
        return {
            split: {k: float(np.ptp([r[f"{split}_{k}"] for r in rows])) for k in _KEYS}
            for split in ("official", "dedup")
        }

    if len(by_variant.get(variant, [])) >= 2:
        rows = by_variant[variant]
        return {"source": f"{variant} over {len(rows)} seeds", "seeds": len(rows), **spread(rows)}
    multi = {v: spread(rows) for v, rows in by_variant.items() if len(rows) >= 2}
    if not multi:
        raise ValueError("no recipe was published with two or more seeds: there is no seed spread to compare with")
    widest = max(multi, key=lambda v: multi[v]["official"]["accuracy"])
    return {
        "source": f"{variant} was published with one seed: the widest spread of a recipe with several, {widest} "
        f"over {len(by_variant[widest])} seeds",
        "seeds": len(by_variant[widest]),
        **multi[widest],
    }


def compare_runs(published: str | os.PathLike, rerun: str | os.PathLike, spread: dict) -> dict:
    """Compare a rerun's run directory with the published run's folder (metrics and test predictions)."""
    pub_m = read_json(Path(published) / "metrics.json", schema="metrics")
    new_m = read_json(Path(rerun) / "metrics.json", schema="metrics")
    pub_p = records.read_predictions(published)
    new_p = records.read_predictions(rerun).align(pub_p.paths)
    diffs, inside = {}, True
    for split in ("official", "dedup"):
        diffs[split] = {}
        for k in _KEYS:
            d = float(new_m[split][k] - pub_m[split][k])
            ok = abs(d) <= spread[split][k] + 1e-12
            inside &= ok
            diffs[split][k] = {"published": pub_m[split][k], "rerun": new_m[split][k], "difference": d, "inside": ok}
    return {
        "metrics": diffs,
        "n_test": len(pub_p.paths),
        "same_class": float(np.mean(pub_p.pred == new_p.pred)),
        "max_abs_prob_diff": float(np.abs(pub_p.probs - new_p.probs).max()),
        "identical_predictions": bool(np.array_equal(pub_p.probs, new_p.probs)),
        "inside_seed_spread": bool(inside),
    }


def recipe_overrides(profile: str, variant: str, seed: int) -> dict:
    """The settings ``profile``'s plan trains ``<variant>/seed-<seed>`` with beyond the profile's own (e.g.
    another backbone's native input size, ``{"data.image_size": 240}``); ``{}`` for a recipe it does not plan."""
    planned = load_config(profile).runs_root / variant / f"seed-{seed}"
    job = next((j for j in plan(profile) if j.notebook == "02_train" and j.run_dir == planned), None)
    return dict(job.params.get("overrides") or {}) if job else {}


def verify(
    profile: str = "cpu",
    recipe: str | None = None,
    *,
    res: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict:
    """Retrain ``recipe`` (default: the published single model, else the best official accuracy) with
    ``profile``'s settings and compare it with the published record; returns the record, also written
    to ``out`` (default ``results/<profile>/verify.json``; ``out=False``-like empty string: not written)."""
    res = Path(res) if res else results_dir(profile)
    summary = read_json(res / "summary.json", schema="summary")
    if recipe is None:
        mf = models_dir(profile) / MODELS_MANIFEST
        recipe = (
            read_json(mf, schema="published_models")["single"]
            if mf.is_file()
            else max(summary["models"], key=lambda n: summary["models"][n]["official_accuracy"])
        )
    variant, seed = _split_name(recipe)
    published = records.published_run(res, variant, seed)
    if not (published / "metrics.json").is_file():
        raise FileNotFoundError(f"{paths.relative(published)}: no published run {recipe!r} to verify")
    info = read_json(published / "run.json", schema="run") if (published / "run.json").is_file() else None
    if "@" in variant:
        raise ValueError(f"verify retrains plain recipes; {variant!r} is a schedule variant")
    backbone, *modules = variant.split("+")
    overrides = recipe_overrides(profile, variant, seed)
    cfg = load_config(
        profile, overrides={**overrides, "model.backbone": backbone, "model.modules": modules, "seed": seed}
    )
    run_dir = cfg.runs_root / "verify" / variant / f"seed-{seed}"
    train = train_run(cfg, run_dir=run_dir, show_progress=show_progress)
    rerun_env = records.RunInfo.read(run_dir).environment
    spread = seed_spread(summary["models"], variant)
    record = {
        "profile": profile,
        "recipe": recipe,
        "overrides": overrides,
        "rerun": paths.relative(run_dir),
        "published_cpu": (info or {}).get("environment", {}).get("cpu_model"),
        "rerun_cpu": rerun_env.get("cpu_model"),
        # a published run records its vector instruction sets since this field exists (None before)
        "published_cpu_flags": (info or {}).get("environment", {}).get("cpu_flags"),
        "rerun_cpu_flags": rerun_env.get("cpu_flags"),
        "rerun_determinism": rerun_env.get("determinism"),
        "rerun_commit": rerun_env.get("git"),
        "rerun_seconds": train["wall_seconds"],
        "seed_spread": spread,
        **compare_runs(published, run_dir, spread),
    }
    if out != "":
        target = Path(out) if out else res / "verify.json"
        write_json(target, record, schema="verify")
        if target.parent == res and (res / MANIFEST).is_file():
            write_manifest(res, profile, files=[target])
    return record


def format_verify(r: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"verify {r['recipe']} ({r['profile']}): rerun {r['rerun']} on {r['rerun_cpu']}"]
    for split, ms in r["metrics"].items():
        for k, m in ms.items():
            lines.append(
                f"  {split:8s} {k:9s} published {m['published']:.4f}  rerun {m['rerun']:.4f}  "
                f"diff {m['difference']:+.4f}  spread {r['seed_spread'][split][k]:.4f}  "
                + ("inside" if m["inside"] else "OUTSIDE")
            )
    lines.append(
        f"  same class for {r['same_class']:.1%} of {r['n_test']} test images; max |dp| {r['max_abs_prob_diff']:.2e}"
    )
    lines.append(f"  seed spread: {r['seed_spread']['source']}")
    lines.append("reproduced (inside the published seed spread)" if r["inside_seed_spread"] else "NOT reproduced")
    return "\n".join(lines)
