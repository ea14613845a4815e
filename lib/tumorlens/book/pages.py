"""What the results page says, computed from a collected ``results/<profile>/`` folder.

The notebook ``06_results`` only glues these values into its prose and displays the tables:

    words = results_glue(Path("results/cpu"))                 # {"rq1_diff_off": "+0.0099 [...]", ...}
    tables.smoke_backbones_table(res); published_comparison(res, profile)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tumorlens import paths
from tumorlens.book.figures import PRETTY
from tumorlens.book.lesion import lesion_glue, read_lesion, study_glue
from tumorlens.book.text import (
    ci_text,
    diff_text,
    explain_seeds_words,
    find_row,
    localisation_words,
    module_cost_claim,
    rq3_words,
    run_words,
    verdict,
)
from tumorlens.config import load_config
from tumorlens.experiments.grid import projected_minutes
from tumorlens.experiments.jobs import PLAN_PARTS
from tumorlens.experiments.steps import STEPS
from tumorlens.utils.files import read_json

__all__ = [
    "read_optional",
    "results_glue",
    "verify_glue",
    "grid_glue",
    "external_glue",
    "evidence_gate_words",
    "inversion_words",
    "seed_ablation_words",
    "view_balance_words",
    "ablation_variants",
    "smoke_backbones_frame",
    "published_comparison",
    "robustness_glue",
    "run_words",
    "read_published_models",
    "published_model_glue",
    "read_overlap",
    "overlap_glue",
    "conclusion_glue",
    "read_guard",
    "guard_glue",
    "reproduction_glue",
    "full_run_words",
    "end_to_end_words",
    "parts_words",
    "profile_note",
]


def read_optional(path: Path, schema: str) -> dict | None:
    """A results file checked against its schema (`SchemaError` naming it when stale); None when absent."""
    return read_json(path, schema=schema) if path.is_file() else None


def ablation_variants(rq: dict) -> list[str]:
    """The runs the ablation bars show, in the page's order (standard, each module, all, warm-up only, ViT)."""
    bb, first = rq["backbone"], rq["seeds"][0]
    allm = f"{bb}+mab+respath+sbr"
    return [
        f"{bb}/seed-{first}",
        f"{bb}+mab/seed-{first}",
        f"{bb}+respath/seed-{first}",
        f"{bb}+sbr/seed-{first}",
        f"{allm}/seed-{first}",
        f"{allm}@warmup-only/seed-{first}",
        f"vit/seed-{first}",
    ]


#: What each part of the plan (`tumorlens.experiments.jobs.PLAN_PARTS`) gives the book.
PART_NUMBERS = {
    "headline": "the data audit, RQ1 (standard vs all modules over every seed, each module alone), RQ2 (the "
    "ensembles), the best system and the external check of the published models",
    "supplementary": "RQ3 (explanations and weak masks, of the best of the headline's runs), RQ4 (warm-up "
    "only), RQ5 (the ViT), robustness and the other backbones' smoke evidence",
    "study": "the lesion study's retrained candidates (the lesion chapter's table; no paper number reads them)",
}


def full_run_words(timing: dict) -> str:
    """What a reader's full rerun costs: ``reproduction.json``'s ``full_run`` (one uninterrupted `make
    reproduce` from an empty runs/), else the paper parts' notebook times added up, said as such."""
    full = timing.get("full_run")
    if full:
        c = str((full.get("commit") or {}).get("commit", ""))[:7] or "unknown"
        text = (
            f"one uninterrupted make reproduce ran the {' and '.join(full['parts'])} parts ({full['jobs']} jobs) "
            f"in {full['minutes']:.0f} minutes on a {full['cpus']}-core {full['cpu_model']} machine (commit {c})"
        )
        again = full.get("jobs_rerun_since") or []
        if again:
            text += f"; {len(again)} of its jobs ran again after it ({', '.join(again)})"
        return text
    minutes = timing.get("part_minutes") or {}
    paper = [p for p in PLAN_PARTS if p != "study" and p in minutes]
    if not paper:
        return "not measured for these results"
    return (
        f"not yet measured in one uninterrupted make reproduce; the {' and '.join(paper)} parts' notebook times "
        f"add up to {sum(minutes[p] for p in paper):.0f} minutes (each job timed when it last ran)"
    )


def end_to_end_words(timing: dict) -> str:
    """One sentence on the reproduction's measured wall time (``reproduction.json``'s ``end_to_end`` and
    ``end_to_end_parts``: the whole profile in one go, or each part in its own uninterrupted run)."""
    scopes = timing.get("end_to_end_parts") or ({"all": timing["end_to_end"]} if timing.get("end_to_end") else {})
    if not scopes:
        return "no uninterrupted run of every job has been recorded for these results yet (make reproduce records one)"
    said = []
    for scope in ("all", *PLAN_PARTS):
        rec = scopes.get(scope)
        if not rec:
            continue
        w = rec["workers"]
        where = (
            "an existing Dask cluster, planned from"
            if rec.get("scheduler")
            else f"{w} worker{'s' if w != 1 else ''} of"
        )
        what = f"ran all {rec['jobs']} jobs" if scope == "all" else f"the {scope} part ran its {rec['jobs']} jobs"
        text = (
            f"{'one uninterrupted make reproduce' if scope == 'all' else 'in one uninterrupted run,'} {what} in "
            f"{rec['minutes']:.0f} minutes (wall clock, on {where} a {rec['cpus']}-core {rec['cpu_model']} machine, "
            f"commit {str((rec.get('commit') or {}).get('commit', ''))[:7] or 'unknown'})"
        )
        again = rec.get("jobs_rerun_since") or []
        if again:
            text += f"; {len(again)} job{'s were' if len(again) > 1 else ' was'} rerun after it ({', '.join(again)})"
        said.append(text)
    return "; ".join(said)


def parts_words(timing: dict) -> str:
    """Which numbers come from which part of the plan, with each part's jobs and summed notebook minutes."""
    jobs = timing.get("jobs") or []
    if not any(j.get("part") for j in jobs):
        return "these results were collected before the plan had parts"
    minutes = timing.get("part_minutes") or {}
    said = []
    for part, numbers in PART_NUMBERS.items():
        n = sum(j.get("part") == part for j in jobs)
        if n:
            said.append(
                f"the {part} part ({n} jobs, {minutes.get(part, 0):.0f} notebook-minutes added up) gives {numbers}"
            )
    return "; ".join(said)


def grid_glue(res: Path, profile: str, timing: dict, grid: dict | None) -> dict[str, str]:
    """The reproduction on N workers: projected from the per-job times, and the measured smoke grid."""
    p = projected_minutes(profile, timing)
    w = p["workers"]
    out = {
        "grid_projection": (
            ", ".join(f"{m:.0f} minutes on {n} worker{'s' if n > 1 else ''}" for n, m in w.items())
            + f" (the dependencies' critical path: {p['critical_path']:.0f} minutes; "
            f"{p['jobs_timed']} of {p['jobs']} jobs timed)"
        )
    }
    if grid:
        ws = grid["wall_seconds"]
        out["grid_measured"] = (
            f"the smoke grid took {ws['grid']:.0f} s on {grid['workers']} Dask workers against "
            f"{ws['sequential']:.0f} s one job after another on this {grid['cpus']}-core machine, and the two runs "
            + (
                "wrote the same results files"
                if grid["identical_results"]
                else f"differed in {len(grid['differing_files'])} files"
            )
        )
    else:
        out["grid_measured"] = "the smoke grid on Dask workers has not been measured for these results"
    out["repro_end_to_end"] = end_to_end_words(timing)
    out["repro_parts"] = parts_words(timing)
    return out


def external_glue(ext: dict | None) -> dict[str, str]:
    """The external check's headline (``external.json`` from `tumorlens external`), or what to run."""
    if not ext or not ext["sets"]:
        return {
            "ext_summary": "not measured for these results (run `tumorlens external --profile P`)",
            "abs_external": "not yet measured on another release",
        }
    first = ext["sets"][0]
    top_name, top = max(first["systems"].items(), key=lambda kv: kv[1]["accuracy"])
    nt = top["notumor_recall"]
    abs_external = (
        f"{top['accuracy']:.3f} on {top['n']} images of another release ({first['name']}, the "
        f"{top_name.split(':')[0]} model{'s' if 'voting' in top_name else ''}"
        + (f"; no-tumour recall {nt:.2f}" if nt is not None else "")
        + ")"
    )
    parts = []
    for s in ext["sets"]:
        for name, m in s["systems"].items():
            nt = m["notumor_recall"]
            views = [d["notumor_recall"] for d in m["per_view"].values() if d["notumor_recall"] is not None]
            parts.append(
                f"on {s['name']} ({m['n']} images) the {name.split(':')[0]} model{'s' if 'voting' in name else ''} "
                f"reached accuracy {m['accuracy']:.3f} [{m['accuracy_lo']:.3f}, {m['accuracy_hi']:.3f}] and "
                f"no-tumour recall {'n/a' if nt is None else f'{nt:.2f}'}"
                + (f" (lowest in one view: {min(views):.2f})" if views else "")
            )
    return {"ext_summary": "; ".join(parts), "abs_external": abs_external}


def evidence_gate_words(ext: dict | None, bar: float = 0.9) -> str:
    """The evidence gate (``external.json["evidence_gate"]``) in two sentences: how the network's evidence
    lies per class on validation and on the external set (no-tumour median and upper quartile against
    the tumour classes'), what the threshold chosen on validation does to both, and what the lowest
    threshold reaching a no-tumour recall of ``bar`` on the external set would cost; ``not measured``
    without a record."""
    gate = (ext or {}).get("evidence_gate")
    if not gate:
        return "not measured (run `tumorlens external --profile P` with a published weak-mask network)"
    val, other = gate["sets"][0], gate["sets"][1]
    ev = gate["evidence"]

    def q(name: str, cls: str, at: str) -> str:
        v = ev[name][cls]["quantiles"].get(at)
        return "n/a" if v is None else f"{v:.3f}"

    low_glioma = q(val, "glioma", "0.05")
    chosen = gate["chosen"]
    base = gate["curve"][0]
    # what it would take (reporting only): the lowest threshold that lifts the external no-tumour recall to
    # the bar, else the threshold with the highest recall
    enough = [r for r in gate["curve"] if (r[f"{other}_notumor_recall"] or 0) >= bar]
    best_nt = (
        min(enough, key=lambda r: r["threshold"])
        if enough
        else max(gate["curve"], key=lambda r: (r[f"{other}_notumor_recall"] or 0, -r["threshold"]))
    )
    return (
        f"the network's evidence on no-tumour scans has median {q(val, 'notumor', '0.5')} and upper quartile "
        f"{q(val, 'notumor', '0.75')} on validation but {q(other, 'notumor', '0.5')} and "
        f"{q(other, 'notumor', '0.75')} on {other}, while 5% of validation gliomas lie below {low_glioma}: "
        f"on {other} the network sees a tumour in many healthy scans too. Chosen on validation, the threshold "
        f"is {chosen['threshold']:.2f} ({'no gate' if chosen['threshold'] == 0 else 'a gate'}; validation "
        f"accuracy {chosen[f'{val}_accuracy']:.3f}, {other} accuracy {chosen[f'{other}_accuracy']:.3f}, "
        f"no-tumour recall {chosen[f'{other}_notumor_recall']:.2f}). "
        + (
            f"The lowest threshold that lifts the {other} no-tumour recall to {bar:.2f} or more"
            if enough
            else f"No threshold lifts the {other} no-tumour recall to {bar:.2f}; the highest"
        )
        + f" is {best_nt['threshold']:.2f} (recall {best_nt[f'{other}_notumor_recall']:.2f}), where "
        f"validation accuracy falls from {base[f'{val}_accuracy']:.3f} to {best_nt[f'{val}_accuracy']:.3f} and "
        f"{other} accuracy moves from {base[f'{other}_accuracy']:.3f} to {best_nt[f'{other}_accuracy']:.3f}"
    )


#: What the tags of the ablation runs of the standard variant change, for the results page's prose.
ABLATION_TAGS = {
    "intensity": "trained with intensity remapping",
    "invert": "trained with contrast inversion",
    "views": "trained with plane-balanced weights",
    "pool-lse": "with a log-sum-exp head",
    "pool-topk": "with a top-k head",
}


def external_ablation_words(ext: dict | None, backbone: str, seed: int) -> str:
    """The standard variant's ablation runs (`ABLATION_TAGS`) on the first external set, each against
    the standard run of the same seed: accuracy [95% CI] and no-tumour recall; ``not measured`` when
    `tumorlens external` has not scored them."""
    runs = (ext or {}).get("runs") or {}
    ref = runs.get(f"{backbone}/seed-{seed}")
    if not ref:
        return "not measured (run `tumorlens external --profile P` after the ablation runs)"
    name = next(iter(ref))

    def words(m: dict) -> str:
        nt = m.get("notumor_recall")
        return f"accuracy {m['accuracy']:.3f} [{m['accuracy_lo']:.3f}, {m['accuracy_hi']:.3f}], no-tumour recall " + (
            "n/a" if nt is None else f"{nt:.2f}"
        )

    parts = [
        f"{what}: {words(runs[key][name])}"
        for tag, what in ABLATION_TAGS.items()
        if name in runs.get(key := f"{backbone}@{tag}/seed-{seed}", {})
    ]
    if not parts:
        return "no ablation run of the standard variant was scored"
    return f"the standard run (seed {seed}) {words(ref[name])} on {name}; " + "; ".join(parts)


def _seed_accuracy_cells(seeds_table: list[dict], variant: str) -> tuple[list[str], int]:
    """``variant``'s accuracy mean ± sd over seeds per test set (official, de-duplicated, external when
    scored) as text cells, and the largest number of seeds behind them."""
    cells, n = [], 0
    for ts, label in (("official", "official"), ("dedup", "de-duplicated"), ("external", "external")):
        row = find_row(seeds_table, variant=variant, test_set=ts, metric="accuracy")
        if row and row["n"]:
            sd = "" if row["n"] < 2 else f" ± {row['sd']:.4f}"
            cells.append(f"{label} {row['mean']:.4f}{sd}")
            n = max(n, row["n"])
    return cells, n


def backbones_words(rq: dict) -> str:
    """The further backbones' seed summaries (``rq.json["backbones"]``) beside the standard variant's:
    accuracy mean ± sd over the seeds on the official split, the de-duplicated subset and (when scored)
    the external set; what to run when absent."""
    block = rq.get("backbones")
    if not block:
        return "not run for these results (set reproduce.backbones and run the headline part)"
    parts = []
    for v in block["variants"]:
        cells, n = _seed_accuracy_cells(block["seeds_table"], v)
        parts.append(f"{v}: {', '.join(cells)} ({n} seed{'s' if n != 1 else ''})")
    return "; ".join(parts)


def seed_ablation_words(rq: dict, key: str = "inversion") -> str:
    """A shortcut ablation over seeds (``rq.json[key]``, `tumorlens.experiments.rq.SEED_ABLATIONS`): the
    standard variant with and without the change, mean ± sd over the seeds of accuracy on each test set
    and of the external no-tumour recall; what to run when absent."""
    block = rq.get(key)
    if not block:
        setting = {"inversion": "reproduce.inversion", "views": "reproduce.view_balance"}.get(key, key)
        return f"not run for these results (set {setting} and run the supplementary part)"
    parts = []
    for v in block["variants"]:
        cells, n = _seed_accuracy_cells(block["seeds_table"], v)
        recalls = [
            r["external_notumor_recall"]
            for k, r in rq.get("runs", {}).items()
            if k.startswith(f"{v}/seed-") and r.get("external_notumor_recall") is not None
        ]
        if recalls:
            mean = sum(recalls) / len(recalls)
            cells.append(f"external no-tumour recall {mean:.2f} (per seed {', '.join(f'{x:.2f}' for x in recalls)})")
        parts.append(f"{v} ({n} seed{'s' if n != 1 else ''}): {', '.join(cells)}")
    return "; ".join(parts)


def inversion_words(rq: dict) -> str:
    """`seed_ablation_words` of the contrast-inversion ablation (``rq.json["inversion"]``)."""
    return seed_ablation_words(rq, "inversion")


def view_balance_words(rq: dict) -> str:
    """The view-shortcut ablation (``rq.json["views"]``) as `seed_ablation_words`, led by what its
    runs estimated to weight by: the non-axial no-tumour training slices, the estimate's accuracy on
    the hand labels and the weights the balance gave."""
    words = seed_ablation_words(rq, "views")
    est = (rq.get("views") or {}).get("estimate")
    if not est:
        return words
    nt = est["train_counts"].get("notumor", {})
    w = est["weights"].get("notumor", {})
    total, lab = sum(nt.values()), est["labelled"]
    acc = lab.get("cv_accuracy")
    lead = "the plane estimate" + (
        f" ({acc:.0%} correct in {lab['folds']}-fold cross-validation on {lab['n']} hand labels)"
        if acc is not None
        else ""
    )
    lead += (
        f" finds {total - nt.get('axial', 0):,} of {total:,} no-tumour training slices not axial "
        f"({nt.get('coronal', 0):,} coronal, {nt.get('sagittal', 0):,} sagittal); with balance {est['balance']:g} "
        "a no-tumour slice weighs "
        + ", ".join(f"{w[v]:.2f} ({v})" for v in ("axial", "coronal", "sagittal") if v in w)
        + " within its class: "
    )
    return lead + words


def verify_glue(v: dict | None) -> dict[str, str]:
    """The rerun check's sentence parts (``verify.json`` from `tumorlens verify`), or what to run."""
    if not v:
        return {
            "ver_summary": "not run for these results (run `tumorlens verify --profile P`, then rebuild the book)",
            "ver_verdict": "not checked",
        }
    acc, f1 = v["metrics"]["official"]["accuracy"], v["metrics"]["official"]["macro_f1"]
    dacc = v["metrics"]["dedup"]["accuracy"]
    sp = v["seed_spread"]
    det = v.get("rerun_determinism") or {}
    return {
        "ver_summary": (
            f"{v['recipe']} retrained on {v.get('rerun_cpu') or 'an unrecorded CPU'} (op determinism "
            f"{'on' if det.get('op_determinism') else 'off'}; the published run's CPU: "
            f"{v.get('published_cpu') or 'not recorded'}) scored official accuracy {acc['rerun']:.4f} against the "
            f"published {acc['published']:.4f} ({acc['difference']:+.4f}), macro-F1 {f1['rerun']:.4f} against "
            f"{f1['published']:.4f} ({f1['difference']:+.4f}) and de-duplicated accuracy {dacc['rerun']:.4f} against "
            f"{dacc['published']:.4f} ({dacc['difference']:+.4f}); {v['same_class']:.1%} of the {v['n_test']} test "
            f"images got the same class. The published seed spread it is held to is {sp['official']['accuracy']:.4f} "
            f"in official accuracy ({sp['source']})"
        ),
        "ver_verdict": "reproduced" if v["inside_seed_spread"] else "not reproduced",
    }


def results_glue(res: str | Path, profile: str = "") -> dict[str, str]:
    """Every value the results page (and the book's first page) glues into its prose, as text, by name."""
    res = Path(res)
    rq = read_json(res / "rq.json", schema="rq")
    summary = read_json(res / "summary.json", schema="summary")
    timing = read_json(res / "reproduction.json", schema="reproduction")
    bb, first = rq["backbone"], rq["seeds"][0]
    std, allm = bb, f"{bb}+mab+respath+sbr"
    out = {
        "res_profile": profile or summary.get("profile", ""),
        "res_backbone": bb,
        "res_data": summary["data"],
        "res_size": str(summary["image_size"]),
        "res_minutes": f"{timing['total_minutes']:.0f}",
        "res_seeds": ", ".join(map(str, rq["seeds"])),
        "res_first": str(first),
    }
    scan_file = res / "data" / "scan.json"
    out["res_n_images"] = f"{read_json(scan_file, schema='scan')['n_images']:,}" if scan_file.is_file() else "n/a"
    # headline numbers for the abstract (the book's first page pastes them)
    runs = rq["runs"]
    for key, name in (("std", f"{std}/seed-{first}"), ("all", f"{allm}/seed-{first}")):
        r = runs.get(name)
        out[f"abs_{key}_acc"] = f"{r['official_accuracy']:.3f}" if r else "n/a"
        out[f"abs_{key}_dedup"] = f"{r['dedup_accuracy']:.3f}" if r else "n/a"
    ens = read_optional(res / "ensembles" / "ensembles.json", "ensembles")
    out["abs_n_dedup"] = str(ens["n_dedup"]) if ens else "n/a"
    rq3 = rq3_words(rq.get("rq3"))
    out["abs_dice_gc"], out["abs_seg_method"] = rq3["adopted_dice"], rq3["adopted"]
    out["abs_seg_source"] = rq["rq3"]["summary"]["source"] if rq.get("rq3") else "no masks"
    over = (rq.get("rq3") or {}).get("seeds")
    out["abs_dice_seeds"] = (
        f"{over['dice_mean']['mean']:.3f} ± {over['dice_mean']['sd']:.3f} over {over['dice_mean']['n']} classifier "
        "seeds of the same recipe"
        if over and over["dice_mean"]["n"] > 1
        else "one classifier seed"
    )
    # the targets set before the run (reproduce.target_*), against what was measured
    tgt_acc, tgt_min = summary["targets"]["accuracy"], summary["targets"]["minutes"]
    out |= {
        "tgt_acc_target": f"{tgt_acc['target']:.2f}",
        "tgt_min_target": f"{tgt_min['target']:.0f}",
        "tgt_best": str(tgt_acc["best"]),
        "tgt_acc": f"{tgt_acc['accuracy']:.4f}",
        "tgt_f1": f"{tgt_acc['macro_f1']:.4f}",
        "tgt_acc_met": "met" if tgt_acc["met"] else "not met",
        "tgt_time_met": ("met" if tgt_min["met"] else "not met")
        + (f" ({tgt_min['judged_minutes']:.0f} minutes: {tgt_min['basis']})" if "basis" in tgt_min else ""),
        "res_jobs": str(tgt_min["jobs"]),
    }
    out |= verify_glue(read_optional(res / "verify.json", "verify"))
    ext = read_optional(res / "external.json", "external")
    out |= external_glue(ext)
    out["ext_ablations"] = external_ablation_words(ext, bb, first)
    out["ext_gate"] = evidence_gate_words(ext)
    out["ext_inversion"] = inversion_words(rq)
    out["ext_views"] = view_balance_words(rq)
    out["res_backbones"] = backbones_words(rq)
    out |= grid_glue(res, profile or summary.get("profile", ""), timing, read_optional(res / "grid.json", "grid"))
    # RQ1
    rq1 = rq["rq1"]
    for key, ts in (("off", "official"), ("dd", "dedup")):
        c = find_row(rq1["comparisons"], seed=first, test_set=ts, metric="accuracy", b=std, a=allm)
        out[f"rq1_diff_{key}"] = diff_text(c, p=True)
        out[f"rq1_verdict_{key}"] = verdict(c) if c else "not measured"
    for key, variant in (("std", std), ("all", allm)):
        for ts in ("official", "dedup"):
            row = find_row(rq1["seeds_table"], variant=variant, test_set=ts, metric="accuracy")
            out[f"rq1_seeds_{key}_{ts}"] = f"{row['mean']:.4f} ± {row['sd']:.4f} (n = {row['n']})" if row else "n/a"
    costs = read_optional(res / "block_costs.json", "block_costs")
    out["cost_claim"] = module_cost_claim(costs["blocks"], bb) if costs else "not measured"
    # RQ2
    rq2 = rq.get("rq2")
    for key, system in (("vote", "soft voting"), ("lr", "CNN+LR"), ("svm", "CNN+SVM")):
        for ts in ("official", "dedup"):
            c = find_row(rq2["comparisons"], a=system, test_set=ts, metric="accuracy") if rq2 else None
            out[f"rq2_{key}_{ts}"] = f"{diff_text(c, p=True)}: {verdict(c)}" if c else "not measured"
    out["rq2_members"] = ", ".join(m["name"] for m in rq2["members"]) if rq2 else "none"
    # RQ3
    out |= {f"rq3_{k}": v for k, v in rq3.items()}
    cam = rq["rq3"]["summary"].get("cam") if rq.get("rq3") else None
    out["rq3_seeds"] = explain_seeds_words((rq.get("rq3") or {}).get("seeds"))
    out["rq3_localisation"] = localisation_words(
        read_optional(res / STEPS["03_localisation"].results / "localisation.json", "localisation"), cam
    )
    # RQ4, RQ5
    for q in ("rq4", "rq5"):
        block = rq.get(q)
        for ts in ("official", "dedup"):
            c = find_row(block["comparisons"], test_set=ts, metric="accuracy") if block else None
            out[f"{q}_diff_{ts}"] = diff_text(c)
            out[f"{q}_verdict_{ts}"] = verdict(c) if c else "not measured"
    return out


def smoke_backbones_frame(res: str | Path) -> pd.DataFrame | None:
    """The other backbones' smoke-profile runs (random initialisation, synthetic data); None without any."""
    rows = []
    for run in sorted(Path(res, "smoke_backbones").glob("*/seed-*")):
        m = read_json(run / "metrics.json", schema="metrics")
        rows.append(
            {
                "backbone": run.parent.name,
                "profile": "smoke (synthetic, random init)",
                "accuracy": round(m["official"]["accuracy"], 3),
                "macro-F1": round(m["official"]["macro_f1"], 3),
            }
        )
    return pd.DataFrame(rows).set_index("backbone") if rows else None


def published_comparison(res: str | Path, published_csv: str | Path, profile: str) -> pd.DataFrame:
    """Accuracies others report for this dataset (``book/data/published_results.csv``, quoted), then
    this repository's: the best single model by validation and each ensemble, official split."""
    res = Path(res)
    rq = read_json(res / "rq.json", schema="rq")
    published = pd.read_csv(published_csv)
    first_run = f"{rq['backbone']}/seed-{rq['seeds'][0]}"
    # the single model chosen on validation (the ensembles' first member), as everywhere else in the book
    best_name = rq["rq2"]["members"][0]["name"] if rq.get("rq2") else first_run
    systems = [
        (
            f"tumorlens {profile}: best single model by validation ({best_name})",
            rq["runs"][best_name]["official_accuracy"],
            rq["runs"][best_name]["official_macro_f1"],
        )
    ] + [
        (f"tumorlens {profile}: {k}", v["official"]["accuracy"], v["official"]["macro_f1"])
        for k, v in (rq.get("rq2", {}).get("systems", {}) or {}).items()
        if k != "single best"
    ]
    ours = [
        {
            "source": label,
            "venue": "this repository",
            "year": "",
            "model": "",
            "reported_accuracy": round(acc, 4),
            "reported_macro_f1": round(f1, 4),
            "split": "official Testing split",
            "url": "",
        }
        for label, acc, f1 in systems
    ]
    cols = ["source", "venue", "year", "model", "reported_accuracy", "reported_macro_f1", "split", "url"]
    return pd.concat([published[cols], pd.DataFrame(ours)], ignore_index=True)


def robustness_glue(rob: dict, data_words: str) -> dict[str, str]:
    """The robustness chapter's values as text (``robustness.json``): the worst corruption on the
    official split and the calibration before and after temperature scaling."""
    cal = rob["calibration"]
    worst = max((r for r in rob["rows"] if r["test_set"] == "official"), key=lambda r: r["accuracy_drop"])
    return {
        "rob_run": str(rob["run"]),
        "rob_worst": f"{worst['kind']} at severity {worst['severity']}",
        "rob_worst_drop": f"{worst['accuracy_drop']:.3f}",
        "rob_worst_f1_drop": f"{worst['macro_f1_drop']:.3f}",
        "rob_profile": data_words,
        "cal_t": f"{cal['temperature']:.2f}",
        "cal_before": f"{cal['ece_before']:.4f}",
        "cal_after": f"{cal['ece_after']:.4f}",
    }


# --------------------------------------------------------------------------------------------- the paper
def read_published_models(profile: str) -> dict | None:
    """``models/<profile>/models.json`` (the published single model and ensemble), or None."""
    f = paths.models_root() / profile / "models.json"
    return read_json(f, schema="published_models") if f.is_file() else None


def published_model_glue(res: str | Path, profile: str) -> dict[str, str]:
    """The published single model and ensemble by name (``models/<profile>/models.json``; without one,
    the best single model by validation and the soft vote of the ensemble step) with their scores from
    ``rq.json``: official and de-duplicated accuracy [95% CI]."""
    res = Path(res)
    rq = read_json(res / "rq.json", schema="rq")
    mf = read_published_models(profile)
    rq2 = rq.get("rq2") or {}
    if mf:
        single, members, source = mf["single"], list(mf["ensemble"]), f"models/{profile}/models.json"
    else:
        members = [m["name"] for m in rq2.get("members", [])]
        single = members[0] if members else f"{rq['backbone']}/seed-{rq['seeds'][0]}"
        source = "the best single model by validation (no published models for this profile)"
    r = rq["runs"].get(single, {})
    n_dedup = (read_optional(res / "ensembles" / "ensembles.json", "ensembles") or {}).get("n_dedup")

    def acc(row: dict, ts: str) -> str:
        if f"{ts}_accuracy" not in row:
            return "n/a"
        return ci_text(row[f"{ts}_accuracy"], row[f"{ts}_accuracy_lo"], row[f"{ts}_accuracy_hi"])

    vote = (rq2.get("systems") or {}).get("soft voting") or {}

    def sys_acc(ts: str) -> str:
        m = vote.get(ts) or {}
        return ci_text(m["accuracy"], m["ci"]["accuracy"]["lo"], m["ci"]["accuracy"]["hi"]) if m.get("n") else "n/a"

    return {
        "pub_single": single,
        "pub_single_words": run_words(single),
        "pub_source": source,
        "pub_single_acc": acc(r, "official"),
        "pub_single_f1": ci_text(r["official_macro_f1"], r["official_macro_f1_lo"], r["official_macro_f1_hi"])
        if r
        else "n/a",
        "pub_single_dedup": acc(r, "dedup"),
        "pub_n_dedup": str(n_dedup) if n_dedup is not None else "n/a",
        "pub_ensemble": " + ".join(members) if members else "none",
        "pub_ensemble_words": "; ".join(run_words(m) for m in members) if members else "none",
        "pub_ensemble_acc": sys_acc("official"),
        "pub_ensemble_dedup": sys_acc("dedup"),
    }


def read_overlap(res: str | Path) -> dict | None:
    """``data/brisc_overlap.json`` (`tumorlens.experiments.external.overlap_audit`), or None."""
    return read_optional(Path(res) / "data" / "brisc_overlap.json", "brisc_overlap")


def _score_words(m: dict) -> str:
    return ci_text(m["accuracy"], m["accuracy_lo"], m["accuracy_hi"])


#: Every key `overlap_glue` returns, measured or not.
OVERLAP_KEYS = (
    "ovl_set",
    "ovl_n",
    "ovl_any",
    "ovl_in_testing",
    "ovl_n_kept",
    "ovl_per_class",
    "ovl_rule",
    "ovl_summary",
    "ovl_single_all",
    "ovl_single_nocopy",
    "ovl_match",
    "ovl_single_nt",
)


def overlap_glue(overlap: dict | None, ext: dict | None = None) -> dict[str, str]:
    """The cross-release duplicate audit in words (``brisc_overlap.json``): how many external images have
    a copy in Kaggle Training (and Testing), per class, and the published single model's accuracy on
    all images and on those without a copy; ``not measured`` without the record."""
    if not overlap or not overlap["sets"]:
        missing = "not measured (tumorlens.experiments.external.overlap_audit writes data/brisc_overlap.json)"
        return {k: missing for k in OVERLAP_KEYS}
    s = overlap["sets"][0]
    t = s["total"]
    per = "; ".join(f"{PRETTY.get(c, c)} {d['any']} of {d['n']}" for c, d in s["per_class"].items())
    single = next((k for k in s["systems"] if k.startswith("single")), next(iter(s["systems"])))
    sysd = s["systems"][single]
    nocopy = sysd.get("no_copy")
    return {
        "ovl_set": s["name"],
        "ovl_n": str(s["n_images"]),
        "ovl_any": f"{t['any']} of {t['n']} ({t['any'] / t['n']:.0%})",
        "ovl_in_testing": f"{t['in_testing']} of {t['n']}",
        "ovl_n_kept": str(t["kept"]),
        "ovl_per_class": per,
        "ovl_rule": (
            f"exact bytes, or perceptual hash within {overlap['params']['hash_distance']} bits and thumbnail "
            f"correlation at least {overlap['params']['correlation']:.2f}"
        ),
        "ovl_summary": (
            f"{t['any']} of the {t['n']} images of {s['name']} ({t['any'] / t['n']:.0%}) have a near copy in the "
            f"Kaggle Training split ({per}); {t['in_testing']} have one in Kaggle Testing"
        ),
        "ovl_single_all": f"{_score_words(sysd['all'])} on all {sysd['all']['n']} images",
        "ovl_single_nocopy": (
            f"{_score_words(nocopy)} on the {nocopy['n']} images with no copy in Training" if nocopy else "n/a"
        ),
        "ovl_match": "yes" if s.get("predictions_match_external_json") else "no",
        "ovl_single_nt": (
            f"{sysd['all']['notumor_recall']:.2f} ({s['per_class']['notumor']['n']} no tumour images)"
            if sysd["all"].get("notumor_recall") is not None and "notumor" in s["per_class"]
            else "n/a"
        ),
    }


def conclusion_glue(res: str | Path, profile: str = "") -> dict[str, str]:
    """One line per research question (and the external check), each with its number and 95% interval,
    from ``rq.json``, ``external.json`` and ``brisc_overlap.json``: ``concl_rq1`` ... ``concl_rq5``,
    ``concl_ext``."""
    res = Path(res)
    rq = read_json(res / "rq.json", schema="rq")
    bb, first = rq["backbone"], rq["seeds"][0]
    allm = f"{bb}+mab+respath+sbr"

    def short(c: dict | None) -> str:
        if not c:
            return "not measured"
        return "better" if c["ci_lo"] > 0 else "worse" if c["ci_hi"] < 0 else "no clear difference"

    def answer(off: dict | None, dd: dict | None) -> str:
        """Yes only when better on the official split and not worse on the de-duplicated subset."""
        if not off:
            return "Not measured"
        yes = short(off) == "better" and short(dd) != "worse"
        return f"{'Yes' if yes else 'No'} (official split: {short(off)}; de-duplicated: {short(dd)})"

    def verb(off: dict | None, dd: dict | None) -> str:
        """The abstract's verb: improve on / are worse than (on the official split) / do not measurably improve on."""
        if answer(off, dd).startswith("Yes"):
            return "improve on"
        return "are worse than" if short(off) == "worse" else "do not measurably improve on"

    def pair(rows, **m) -> tuple[dict | None, dict | None]:
        return (
            find_row(rows, test_set="official", metric="accuracy", **m),
            find_row(rows, test_set="dedup", metric="accuracy", **m),
        )

    out = {}
    off, dd = pair(rq["rq1"]["comparisons"], seed=first, b=bb, a=allm)
    seeds_std = find_row(rq["rq1"]["seeds_table"], variant=bb, test_set="official", metric="accuracy")
    seeds_all = find_row(rq["rq1"]["seeds_table"], variant=allm, test_set="official", metric="accuracy")
    over = (
        f"; over {seeds_all['n']} seeds {seeds_all['mean']:.4f} ± {seeds_all['sd']:.4f} against "
        f"{seeds_std['mean']:.4f} ± {seeds_std['sd']:.4f}"
        if seeds_std and seeds_all and seeds_all["n"] > 1
        else ""
    )
    out["abs_rq1_verb"] = verb(off, dd)
    out["abs_rq1_diff"] = f"{diff_text(off)} official, {diff_text(dd)} de-duplicated"
    out["concl_rq1"] = (
        f"{answer(off, dd)} — all three modules change official accuracy by {diff_text(off)} (seed {first}) "
        f"and de-duplicated accuracy by {diff_text(dd)}{over}."
    )
    rq2 = rq.get("rq2")
    off, dd = pair(rq2["comparisons"], a="soft voting") if rq2 else (None, None)
    out["abs_rq2_verb"] = verb(off, dd) if rq2 else "were not measured against"
    out["abs_rq2_diff"] = f"{diff_text(off)} official, {diff_text(dd)} de-duplicated" if rq2 else "not measured"
    out["concl_rq2"] = (
        f"{answer(off, dd)} — soft voting over {len(rq2['members'])} members minus the single best model: "
        f"{diff_text(off)} official, {diff_text(dd)} de-duplicated."
        if rq2
        else "not measured"
    )
    rq3 = rq3_words(rq.get("rq3"))
    seeds = (rq.get("rq3") or {}).get("seeds")
    over3 = (
        f"; over {seeds['dice_mean']['n']} classifier seeds {seeds['dice_mean']['mean']:.3f} ± "
        f"{seeds['dice_mean']['sd']:.3f}"
        if seeds and seeds["dice_mean"]["n"] > 1
        else ""
    )
    out["concl_rq3"] = (
        f"Mean Dice against {rq3['seg_source']} (report half): the paper's Grad-CAM + GrabCut "
        f"{rq3['paper_dice']}; the adopted mask ({rq3['adopted']}) {rq3['adopted_dice']}, a paired difference "
        f"of {rq3['adopted_vs_paper']}{over3}."
        if rq.get("rq3")
        else "not measured"
    )
    block = rq.get("rq4")
    off, dd = pair(block["comparisons"]) if block else (None, None)
    out["concl_rq4"] = (
        f"{answer(off, dd)} — fine-tuning minus warm-up only: {diff_text(off)} official, {diff_text(dd)} "
        "de-duplicated accuracy."
        if block
        else "not measured"
    )
    block = rq.get("rq5")
    off, dd = pair(block["comparisons"]) if block else (None, None)
    out["concl_rq5"] = (
        f"{short(off).capitalize()} on the official split, {short(dd)} on the de-duplicated subset — the ViT minus "
        f"the standard CNN: {diff_text(off)} official, {diff_text(dd)} de-duplicated accuracy."
        if block
        else "not measured"
    )
    ext = read_optional(res / "external.json", "external")
    overlap = read_overlap(res)
    ovl = overlap_glue(overlap, ext)
    pub = published_model_glue(res, profile or rq.get("profile", ""))
    official = rq["runs"].get(pub["pub_single"], {}).get("official_accuracy")
    systems = overlap["sets"][0]["systems"] if overlap and overlap["sets"] else {}
    nocopy = next((v.get("no_copy") for k, v in systems.items() if k.startswith("single")), None)
    # "it holds" only when the images with no copy in Training reach the official split's accuracy
    holds = (
        "Not fully (lower on the images it cannot have seen)"
        if nocopy and official is not None and nocopy["accuracy_hi"] < official
        else "Yes (within the interval of the images it cannot have seen)"
        if nocopy and official is not None
        else "Not measured without copies"
    )
    if ext and ext["sets"]:
        out["concl_ext"] = (
            f"{holds} — the published model ({pub['pub_single_words']}) scores accuracy {ovl['ovl_single_all']} "
            f"of BRISC 2025 ({ext['sets'][0]['name']}) and {ovl['ovl_single_nocopy']}, against "
            f"{pub['pub_single_acc']} on the official Kaggle test split; its no tumour recall there is "
            f"{ovl['ovl_single_nt']}."
        )
    else:
        out["concl_ext"] = "not measured"
    les = lesion_glue(read_lesion(res), pub["pub_single"])
    study = study_glue(rq.get("lesion"))
    out |= {k: les[k] for k in ("abs_lesion", "les_meaning", "les_lesson")}
    out["concl_lesion"] = les["concl_lesion"]
    if rq.get("lesion"):
        out["concl_lesion"] += f" The lesion study: {study['les_study_choice']}."
    return out


def read_guard(profile: str) -> dict | None:
    """``benchmarks/results/guard_<profile>.json`` (the input guard's false alarms and catch rates,
    `benchmarks/guard.py --write`), or None."""
    f = paths.repo_root() / "benchmarks" / "results" / f"guard_{profile}.json"
    return read_json(f) if f.is_file() else None


#: Every key `guard_glue` returns, measured or not.
GUARD_KEYS = ("guard_model", "guard_target", "guard_false_alarms", "guard_catch", "guard_inverted", "guard_summary")


def guard_set_name(name: str, short: bool = False) -> str:
    """A measured set of the guard's record in words (``short``: without the note on validation)."""
    if name == "validation":
        return "Kaggle validation" + ("" if short else " (thresholds set here)")
    if name == "Testing":
        return "Kaggle Testing"
    return f"BRISC 2025 ({name})" if "brisc" in name else name


def guard_glue(guard: dict | None) -> dict[str, str]:
    """The input guard's measured rates in words (`read_guard`): the false alarms on the scans the model
    was made for (validation, Testing, the external release) and the catch rates on what it was not;
    ``not measured`` without a record."""
    if not guard:
        return dict.fromkeys(GUARD_KEYS, "not measured (run `python benchmarks/guard.py --write`)")
    fa, catch = guard["false_alarms"], guard["catch"]
    out = {
        "guard_model": run_words(guard["model"].partition(":")[2] or guard["model"]),
        "guard_target": f"{guard['guard']['false_alarm_target_per_criterion']:.0%}",
        "guard_false_alarms": ", ".join(f"{d['flagged']:.1%} on {guard_set_name(k, True)}" for k, d in fa.items()),
        "guard_catch": ", ".join(f"{d['flagged']:.1%} of {k} ({d['n']:,})" for k, d in catch.items()),
    }
    inv = catch.get("inverted Testing")
    out["guard_inverted"] = (
        f"the features alone flag {inv['by_features']:.1%} of contrast-inverted Testing scans, the background "
        f"check {inv['by_background']:.1%}"
        if inv
        else "not measured"
    )
    out["guard_summary"] = (
        f"the input guard of the published model flags {out['guard_false_alarms']} (false alarms: scans the model "
        f"was made for) and {out['guard_catch']}, the catch rates"
    )
    return out


def reproduction_glue(timing: dict) -> dict[str, str]:
    """The reproduction's time in one short sentence per part (``reproduction.json``): the notebook
    minutes its current results took, and the uninterrupted run's wall time with how many of its jobs
    ran again after it (their names are in `end_to_end_words`, shown collapsed)."""
    minutes = timing.get("part_minutes") or {}
    scopes = timing.get("end_to_end_parts") or {}
    parts = []
    for part in PLAN_PARTS:
        if part not in minutes:
            continue
        text = f"the {part} part's notebooks add up to {minutes[part]:.0f} minutes"
        rec = scopes.get(part)
        if rec:
            again = len(rec.get("jobs_rerun_since") or [])
            text += f" (one uninterrupted run of its {rec['jobs']} jobs took {rec['minutes']:.0f} minutes" + (
                f"; {again} of its jobs ran again after it, so that time no longer describes these results)"
                if again
                else ")"
            )
        parts.append(text)
    return {
        "repro_short": "; ".join(parts) or f"{timing['total_minutes']:.0f} notebook-minutes in all",
        "repro_full": full_run_words(timing),
    }


def profile_note(profile: str) -> str:
    """What a profile's numbers are, in a few words, for the places that print them."""
    cfg = load_config(profile)
    if cfg.data.source == "phantoms":
        return "smoke profile: synthetic phantoms, tiny models — not a result about MRI"
    if profile == "paper":
        return "paper profile: the full schedule"
    return f"{profile} profile: a reduced schedule on CPU cores, not the paper's full schedule"
