"""Collect a profile's runs into the compact results the book reads, and answer RQ1-RQ5.

    collect("cpu")   # runs/cpu/...  ->  results/cpu/...

``results/<profile>/`` holds only small files — metrics, per-image predictions (paths relative to
the dataset root), training histories, segmentation scores, the raw low-resolution CAMs of the
gallery images — never model weights nor dataset images. `make book` renders the book from it
without retraining; the galleries are redrawn from the dataset when it is present.

Research questions (each answered with paired tests on identical test images, on the official
Testing split and on its de-duplicated subset):

- RQ1: do MAB, ResPath and SBR (together, and each alone) improve on the standard backbone?
- RQ2: do ensembles (soft voting, CNN features + LR / SVM) improve on the single best model?
- RQ3: how well do Grad-CAM maps, refined by GrabCut, outline the tumours (Dice, IoU, pointing game)?
- RQ4: does partial fine-tuning improve on warm-up (frozen backbone) alone?
- RQ5: how does a minimal ViT trained from scratch compare with the transfer-learned CNN?
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from tumorlens import paths
from tumorlens.config import CLASSES, load_config

__all__ = ["results_dir", "collect", "find_runs", "load_run", "rq_tables", "verdict", "find_row"]

RUN_FILES = ("metrics.json", "predictions.csv", "val_predictions.csv", "history.csv")


# where the trained variants' compact records go inside results/<profile>/ (not "runs": that name is
# reserved for the uncommitted run outputs)
PUBLISHED_RUNS = "variants"


def published_run(res: str | Path, variant: str, seed: int) -> Path:
    """A collected run's folder: ``results/<profile>/variants/<variant>/seed-<seed>``."""
    return Path(res) / PUBLISHED_RUNS / variant / f"seed-{seed}"


def results_dir(profile: str) -> Path:
    return paths.results_root() / profile


def find_runs(root: Path) -> list[Path]:
    """Finished run directories under ``root`` (``<variant>/seed-<n>`` with metrics and predictions)."""
    return sorted(p.parent for p in root.glob("*/seed-*/metrics.json") if (p.parent / "predictions.csv").is_file())


def _copy_run(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    info = json.loads((src / "config.json").read_text())
    info["summary"]["run_dir"] = f"{src.parent.name}/{src.name}"
    (dest / "run.json").write_text(json.dumps(info, indent=2))


def load_run(run_dir: Path) -> dict:
    """A collected (or live) run: its summary, metrics and test predictions as arrays."""
    from tumorlens.ensemble import read_predictions

    info_file = run_dir / "run.json" if (run_dir / "run.json").is_file() else run_dir / "config.json"
    info = json.loads(info_file.read_text())
    pred = read_predictions(run_dir)
    with open(run_dir / "predictions.csv") as f:
        dedup = np.array([r.get("dedup", "0") == "1" for r in csv.DictReader(f)])
    return {"name": f"{run_dir.parent.name}/{run_dir.name}", "variant": run_dir.parent.name,
            "seed": int(run_dir.name.split("-")[-1]), "summary": info["summary"], "config": info["config"],
            "metrics": json.loads((run_dir / "metrics.json").read_text()), "pred": pred, "dedup": dedup}


def compare_runs(a: dict, b: dict, label_a: str, label_b: str, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Paired comparisons of two runs (`load_run`) on the same test images: accuracy and macro-F1, on
    the official split and on ``a``'s de-duplicated subset; rows as `tumorlens.stats.compare`."""
    from tumorlens.stats import compare

    rows = []
    pb = b["pred"].align(a["pred"].paths)
    for test_set, mask in (("official", np.ones(len(a["dedup"]), bool)), ("dedup", a["dedup"])):
        for metric in ("accuracy", "macro_f1"):
            r = compare(label_a, label_b, a["pred"].y[mask], a["pred"].pred[mask], pb.pred[mask], metric=metric,
                        n_boot=n_boot, seed=seed)
            rows.append({**r, "test_set": test_set})
    return rows


def rq_tables(res: Path, profile_cfg, n_boot: int = 2000) -> dict:
    """RQ1-RQ5 from a results folder (see the module docstring)."""
    from tumorlens.stats import seed_summary

    runs = {f"{p.parent.name}/{p.name}": load_run(p) for p in find_runs(res / PUBLISHED_RUNS)}
    bb = profile_cfg.model.backbone
    seeds = list(profile_cfg.reproduce.seeds) or [profile_cfg.seed]
    first = seeds[0]
    std, allm = bb, f"{bb}+mab+respath+sbr"
    seed0 = profile_cfg.seed
    out: dict = {"profile": profile_cfg.profile, "backbone": bb, "seeds": seeds}

    def get(variant, seed=first):
        return runs.get(f"{variant}/seed-{seed}")

    # RQ1: standard vs all modules over seeds, plus each module alone
    per_seed = []
    for v in (std, allm):
        for test_set in ("official", "dedup"):
            for metric in ("accuracy", "macro_f1"):
                vals = [get(v, s)["metrics"][test_set].get(metric) for s in seeds if get(v, s)]
                per_seed.append({"variant": v, "test_set": test_set, "metric": metric, **seed_summary(vals)})
    rq1 = {"seeds_table": per_seed, "comparisons": []}
    for s in seeds:
        if get(std, s) and get(allm, s):
            rq1["comparisons"] += [{**r, "seed": s} for r in compare_runs(get(allm, s), get(std, s), allm, std, n_boot, s)]
    for mod in ("mab", "respath", "sbr"):
        v = f"{bb}+{mod}"
        if get(v) and get(std):
            rq1["comparisons"] += [{**r, "seed": first, "ablation": mod}
                                   for r in compare_runs(get(v), get(std), v, std, n_boot, seed0)]
    out["rq1"] = rq1
    # RQ2: ensembles (computed by tumorlens.ensemble.evaluate_ensembles)
    ens_file = res / "ensembles" / "ensembles.json"
    if ens_file.is_file():
        ens = json.loads(ens_file.read_text())
        out["rq2"] = {"members": ens["members"], "comparisons": ens["comparisons"],
                      "systems": {k: {t: {m: v[t].get(m) for m in ("n", "accuracy", "macro_f1", "ci")}
                                      for t in ("official", "dedup")} for k, v in ens["systems"].items()}}
    # RQ3: weak segmentation
    seg_file = res / "segmentation" / "summary.json"
    if seg_file.is_file():
        seg = json.loads(seg_file.read_text())
        rq3 = {"summary": seg}
        per_image = res / "segmentation" / "per_image.csv"
        if per_image.is_file():
            rows = list(csv.DictReader(open(per_image)))
            rq3["grabcut_minus_cam"] = _paired_mean_diff([float(r["dice_grabcut"]) for r in rows],
                                                         [float(r["dice_cam"]) for r in rows], n_boot, seed0)
        out["rq3"] = rq3
    # RQ4: warm-up only vs warm-up + fine-tuning (all modules)
    wo = runs.get(f"{allm}@warmup-only/seed-{first}")
    if wo and get(allm):
        out["rq4"] = {"comparisons": compare_runs(get(allm), wo, allm, f"{allm}@warmup-only", n_boot, seed0)}
    # RQ5: ViT vs the standard CNN
    vit = runs.get(f"vit/seed-{first}")
    if vit and get(std):
        out["rq5"] = {"comparisons": compare_runs(vit, get(std), "vit", std, n_boot, seed0),
                      "vit_parameters": vit["summary"]["parameters"], "cnn_parameters": get(std)["summary"]["parameters"]}
    from tumorlens.stats import bootstrap_ci

    out["runs"] = {}
    for k, r in runs.items():
        row = {"variant": r["variant"], "seed": r["seed"], "parameters": r["summary"]["parameters"],
               "wall_seconds": r["summary"]["wall_seconds"]}
        for t, mask in (("official", np.ones(len(r["dedup"]), bool)), ("dedup", r["dedup"])):
            for m in ("accuracy", "macro_f1"):
                ci = bootstrap_ci(r["pred"].y[mask], r["pred"].pred[mask], m, n_boot=n_boot, seed=seed0)
                row[f"{t}_{m}"], row[f"{t}_{m}_lo"], row[f"{t}_{m}_hi"] = ci["value"], ci["lo"], ci["hi"]
        out["runs"][k] = row
    return out


def _paired_mean_diff(a, b, n_boot: int, seed: int) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1) if len(d) else np.array([np.nan])
    return {"n": int(len(d)), "mean_diff": float(d.mean()) if len(d) else float("nan"),
            "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}


def collect(profile: str, *, runs_root: Path | None = None, out: Path | None = None, n_boot: int = 2000) -> Path:
    """Copy a profile's finished runs into ``results/<profile>/`` in compact form and compute the
    RQ tables, the module cost table and the headline ``summary.json``. Returns the folder."""
    from tumorlens.models import block_costs
    from tumorlens.runinfo import environment, write_json

    cfg = load_config(profile)
    runs_root = Path(runs_root) if runs_root else cfg.runs_root
    res = Path(out) if out else results_dir(profile)
    res.mkdir(parents=True, exist_ok=True)
    for sub in (PUBLISHED_RUNS, "ensembles", "segmentation", "data", "smoke_backbones", "robustness"):
        shutil.rmtree(res / sub, ignore_errors=True)
    for run in find_runs(runs_root):
        _copy_run(run, published_run(res, run.parent.name, int(run.name.split("-")[-1])))
    smoke_root = load_config("smoke").runs_root
    for bb in cfg.reproduce.other_backbones:
        for run in sorted((smoke_root / bb).glob("seed-*")):
            if (run / "metrics.json").is_file():
                _copy_run(run, res / "smoke_backbones" / bb / run.name)
    for sub, names in (("data", ("scan.json", "audit.json", "dedup_test.csv", "splits.json")),
                       ("ensembles", None), ("segmentation", None), ("robustness", None)):
        src = runs_root / ("explain" if sub == "segmentation" else sub)
        if not src.is_dir():
            continue
        (res / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted(src.iterdir()):
            keep = f.name in names if names else f.suffix in (".json", ".csv", ".npz")
            if f.is_file() and keep and not f.name.startswith("."):
                shutil.copy2(f, res / sub / f.name)
    rq = rq_tables(res, cfg, n_boot=n_boot)
    write_json(res / "rq.json", rq)
    write_json(res / "block_costs.json", {"image_size": cfg.data.image_size,
                                          "blocks": block_costs(image_size=cfg.data.image_size)})
    timing = _reproduction_time(runs_root, cfg.reproduce.other_backbones)
    write_json(res / "reproduction.json", timing)
    write_json(res / "summary.json", _headline(res, rq, cfg, timing, environment()))
    return res


def _reproduction_time(runs_root: Path, other_backbones=()) -> dict:
    """Seconds per executed notebook (from the runner's records) and their total: the profile's own
    jobs plus the smoke-profile runs of ``other_backbones`` its plan includes."""
    jobs = []
    smoke_root = load_config("smoke").runs_root
    base = runs_root.parent
    extra = [] if runs_root == smoke_root else [d for b in other_backbones for d in smoke_root.glob(f"{b}/seed-*/.done.json")]
    for done in sorted([*runs_root.rglob(".done.json"), *extra]):
        d = json.loads(done.read_text())
        try:
            name = str(done.parent.relative_to(base))
        except ValueError:
            name = str(done.parent)
        jobs.append({"job": name, "notebook": d["notebook"], "seconds": d.get("seconds")})
    total = sum(j["seconds"] or 0 for j in jobs)
    return {"jobs": jobs, "total_seconds": round(total, 1), "total_minutes": round(total / 60, 1)}


def _headline(res: Path, rq: dict, cfg, timing: dict, env: dict) -> dict:
    models = {k: {kk: v[kk] for kk in ("official_accuracy", "official_macro_f1", "dedup_accuracy", "dedup_macro_f1",
                                       "wall_seconds")} for k, v in rq["runs"].items()}
    ens = {k: {f"{t}_{m}": v[t][m] for t in ("official", "dedup") for m in ("accuracy", "macro_f1")}
           for k, v in rq.get("rq2", {}).get("systems", {}).items()}
    seg = rq.get("rq3", {}).get("summary", {}).get("per_class", {}).get("all", {})
    seg_h = {f"{m}_{k}_{s}": seg[f"{m}_{k}"][s] for m in ("dice", "iou") for k in ("cam", "grabcut")
             for s in ("mean", "median") if seg.get(f"{m}_{k}")}
    if seg:
        for key in ("pointing", "pointing_near", "centre_pointing", "centre_pointing_near"):
            seg_h[key.replace("pointing", "pointing_game")] = seg.get(key)
        seg_h["model"] = rq.get("rq3", {}).get("summary", {}).get("model")
    return {"profile": cfg.profile, "data": "synthetic phantoms" if cfg.data.source == "phantoms" else "Kaggle Brain Tumor MRI",
            "image_size": cfg.data.image_size, "models": models, "ensembles": ens, "segmentation": seg_h,
            "targets": targets(rq, timing, cfg),
            "reproduction_minutes": timing["total_minutes"], "environment": {k: env[k] for k in ("python", "cpus", "git")}}


def targets(rq: dict, timing: dict, cfg) -> dict:
    """The targets set before the run (``reproduce.target_*``) against what was measured: the best
    system on the official split (every run and ensemble, picked by test accuracy, so optimistic)
    and the summed notebook time."""
    systems = {k: {"accuracy": v["official_accuracy"], "macro_f1": v["official_macro_f1"]} for k, v in rq["runs"].items()}
    systems.update({k: {m: v["official"][m] for m in ("accuracy", "macro_f1")}
                    for k, v in (rq.get("rq2", {}).get("systems", {}) or {}).items()})
    best = max(systems, key=lambda k: systems[k]["accuracy"])
    t = cfg.reproduce
    return {"accuracy": {"target": t.target_accuracy, "best": best, **systems[best],
                         "met": min(systems[best]["accuracy"], systems[best]["macro_f1"]) >= t.target_accuracy},
            "minutes": {"target": t.target_minutes, "measured": timing["total_minutes"], "jobs": len(timing["jobs"]),
                        "met": timing["total_minutes"] <= t.target_minutes}}


def module_cost_claim(blocks: list[dict], backbone: str) -> str:
    """Words for the paper's claim "fewer parameters than SE or CBAM", per module, from the measured
    ``block_costs.json`` rows of ``backbone``."""
    on = {b["block"]: b["parameters"] for b in blocks if b["backbone"] == backbone}
    if not {"se", "cbam"} <= set(on):
        return "not measured"
    bound = min(on["se"], on["cbam"])
    return "; ".join(f"{name} has {on[b]:,} parameters — {'fewer than' if on[b] < bound else 'not fewer than'} "
                     f"SE ({on['se']:,}) and CBAM ({on['cbam']:,})"
                     for b, name in (("mab", "MAB"), ("respath", "ResPath"), ("sbr", "SBR")) if b in on)


def diff_text(row: dict | None, *, p: bool = False) -> str:
    """A comparison row's difference and 95% CI, ``+0.0099 [+0.004, +0.017]`` (with ``p``: and its
    McNemar p-value); ``n/a`` for a missing row."""
    if row is None:
        return "n/a"
    text = f"{row['diff']:+.4f} [{row['ci_lo']:+.3f}, {row['ci_hi']:+.3f}]"
    return text + (f", McNemar p = {row['p_mcnemar']:.2g}" if p else "")


def verdict(row: dict) -> str:
    """Words for a comparison row: whether the 95% CI of the difference excludes zero."""
    lo, hi = row["ci_lo"], row["ci_hi"]
    if lo > 0:
        return "better (the 95% interval of the difference excludes zero)"
    if hi < 0:
        return "worse (the 95% interval of the difference excludes zero)"
    return "not distinguishable (the 95% interval of the difference includes zero)"


def find_row(rows: list[dict], **match) -> dict | None:
    """The first comparison row whose fields equal ``match`` (e.g. test_set="dedup", metric="accuracy")."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None
