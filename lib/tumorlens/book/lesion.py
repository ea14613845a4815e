"""The lesion-removal test and the lesion study for the book: words and tables (render only).

    lesion = read_lesion(Path("results/cpu"))                 # lesion.json, or None
    words = lesion_glue(lesion, "efficientnet_lite1/seed-43") # {"les_removed_telea": "1.6% [0.8, 3.3]", ...}
    lesion_rates_tables(lesion, single)                       # the published models: a table per measure
    study_glue(rq.get("lesion"))                              # the study's rule and choice, in words

Every value comes from ``results/<profile>/lesion.json`` (`tumorlens evaluate lesion`) and
``rq.json["lesion"]`` (`tumorlens collect`); every word exists without them (``not measured``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from tumorlens.book.figures import PRETTY
from tumorlens.book.text import run_words
from tumorlens.experiments.jobs import COUNTERFACTUAL_STUDY
from tumorlens.utils.files import read_json

__all__ = [
    "FILLS",
    "VIEWS",
    "LESION_KEYS",
    "STUDY_KEYS",
    "read_lesion",
    "rate_text",
    "published_entries",
    "lesion_glue",
    "lesion_rates_tables",
    "lesion_groups_tables",
    "study_glue",
    "study_tables",
    "recipe_table",
    "statistics_tables",
]

#: The fills of `tumorlens.data.lesion.METHODS`, in words.
FILLS = {"telea": "Telea inpainting", "ns": "Navier–Stokes inpainting", "ring": "ring fill (no inpainting)"}
FILL_SHORT = {"telea": "Telea", "ns": "Navier–Stokes", "ring": "ring fill"}
#: The views in BRISC's file names.
VIEWS = {"ax": "axial", "co": "coronal", "sa": "sagittal"}
#: The measured rates of one fill (``lesion.json``), as a table's columns say them.
MEASURES = {
    "removed_notumor": "lesion removed → no tumour",
    "control_notumor": "control removed → no tumour",
    "control_kept": "control removed → class kept",
}
NOT_MEASURED = "not measured (run `tumorlens evaluate lesion --profile P`)"


def read_lesion(res: str | Path) -> dict | None:
    """``results/<profile>/lesion.json`` checked against its schema, or None when absent."""
    f = Path(res) / "lesion.json"
    return read_json(f, schema="lesion") if f.is_file() else None


def rate_text(d: Mapping | None, digits: int = 1) -> str:
    """A Wilson proportion (``{value, lo, hi, k, n}``) in percent with its 95% interval,
    ``1.6% [0.8, 3.3]``; ``n/a`` when missing."""
    if not d or d.get("value") is None:
        return "n/a"
    return f"{100 * d['value']:.{digits}f}% [{100 * d['lo']:.{digits}f}, {100 * d['hi']:.{digits}f}]"


def _complement(d: Mapping) -> dict:
    """The complementary proportion (``n - k`` of ``n``); a Wilson interval maps onto itself."""
    return {"value": 1 - d["value"], "lo": 1 - d["hi"], "hi": 1 - d["lo"], "k": d["n"] - d["k"], "n": d["n"]}


def _model_label(key: str, single: str | None) -> str:
    kind, _, names = key.partition(": ")
    if "voting" in kind:
        return f"soft-voting ensemble ({len(names.split(' + '))} members)"
    if kind == "published" and names == single:
        return f"single model: {run_words(names)}"
    if kind == "published":
        return f"member: {run_words(names)}"
    return run_words(key)


def published_entries(models: Mapping[str, Mapping], single: str | None) -> list[tuple[str, str]]:
    """``(key, label)`` of the published models in a ``models`` block of ``lesion.json``: the single
    model first, then the other ensemble members, then the soft-voting ensemble (study runs left out)."""
    keys = [k for k in models if k.startswith("published")]

    def order(k: str) -> int:
        return 0 if k == f"published: {single}" else 2 if "voting" in k.partition(": ")[0] else 1

    return [(k, _model_label(k, single)) for k in sorted(keys, key=order)]


#: Every key `lesion_glue` returns, measured or not.
LESION_KEYS = (
    "les_set",
    "les_n",
    "les_n_control",
    "les_dilation",
    "les_size",
    "les_fills",
    "les_model",
    "les_original_correct",
    "les_original_notumor",
    *(f"les_{m}_{f}" for f in FILLS for m in ("removed", "still", "control", "kept", "unchanged")),
    "les_summary",
    "les_val_n",
    "les_val_masks",
    "les_val_dilation",
    "les_val_summary",
    "les_verdict",
    "les_meaning",
    "les_lesson",
    "abs_lesion",
    "concl_lesion",
)


def lesion_glue(lesion: Mapping | None, single: str | None) -> dict[str, str]:
    """The lesion-removal test of the published single model ``single`` in words, by glue name
    (`LESION_KEYS`): the test set, each fill's rates with Wilson 95% intervals (lesion removed -> no
    tumour and its complement, still a tumour; the control removed -> no tumour, class kept, prediction
    unchanged), the validation split's test, a verdict, and the abstract's and conclusion's lines."""
    out = dict.fromkeys(LESION_KEYS, NOT_MEASURED)
    if not lesion:
        return out
    s = lesion["set"]
    out |= {
        "les_set": f"BRISC 2025 expert-masked tumour images ({s['name']})" if "brisc" in s["name"] else s["name"],
        "les_n": f"{s['n']:,}",
        "les_dilation": f"{lesion['dilation']:.0%}",
        "les_size": str(s.get("image_size", "n/a")),
        "les_fills": ", ".join(FILLS.get(f, f) for f in lesion["methods"]),
    }
    m = (lesion.get("models") or {}).get(f"published: {single}")
    if not m:
        out["les_model"] = f"{single} (not in lesion.json)"
        return out
    o = m["overall"]
    out |= {
        "les_model": run_words(single),
        "les_n_control": f"{m['n_control']:,}",
        "les_original_correct": rate_text(o["original"]["correct"]),
        "les_original_notumor": rate_text(o["original"]["notumor"]),
    }
    for f in FILLS:
        if f not in o:
            continue
        out |= {
            f"les_removed_{f}": rate_text(o[f]["removed_notumor"]),
            f"les_still_{f}": rate_text(_complement(o[f]["removed_notumor"])),
            f"les_control_{f}": rate_text(o[f]["control_notumor"]),
            f"les_kept_{f}": rate_text(o[f]["control_kept"]),
            f"les_unchanged_{f}": rate_text(o[f]["control_unchanged"]),
        }
    fills = [f for f in lesion["methods"] if f in o]
    first = fills[0]
    removed = ", ".join(f"{rate_text(o[f]['removed_notumor'])} ({FILL_SHORT.get(f, f)})" for f in fills)
    out["les_summary"] = (
        f"with the lesion removed, the published single model calls no tumour {removed} of the {s['n']:,} scans; "
        f"with a same-shaped region removed elsewhere in the head instead ({m['n_control']:,} scans where one fits), "
        f"{rate_text(o[first]['control_notumor'])} are called no tumour and {rate_text(o[first]['control_kept'])} "
        f"keep their true class ({FILL_SHORT.get(first, first)}), against {rate_text(o['original']['correct'])} "
        "correct on the original scans"
    )
    worst = max(fills, key=lambda f: o[f]["removed_notumor"]["value"])
    r = o[worst]["removed_notumor"]
    out["les_verdict"] = "No" if r["hi"] < 0.5 else "Largely yes" if r["lo"] > 0.5 else "Partly"
    out["les_meaning"] = {
        "No": "the call does not need the lesion: the model finds tumour evidence in the rest of the slice",
        "Partly": "the call needs the lesion for part of the scans; for the rest the model finds evidence elsewhere",
        "Largely yes": "the call rests largely on the lesion",
    }[out["les_verdict"]]
    out["les_lesson"] = (
        "A high accuracy on this dataset is therefore no evidence that a model has learned what a tumour looks like"
        if out["les_verdict"] == "No"
        else "A high accuracy on this dataset still needs checks like these before it is read as knowing what a "
        "tumour looks like"
    )
    still = rate_text(_complement(o[first]["removed_notumor"]))
    lead = {
        "No": "The decision does not need the lesion",
        "Partly": "The decision needs the lesion only in part",
        "Largely yes": "The decision rests largely on the lesion",
    }[out["les_verdict"]]
    out["abs_lesion"] = (
        f"{lead}: with the expert-marked lesion removed ({FILLS.get(first, first)}), the published model still "
        f"calls {still} of {s['n']:,} BRISC tumour scans a tumour (a same-shaped region removed elsewhere "
        f"instead: {rate_text(o[first]['control_notumor'])} called no tumour)"
    )
    out["concl_lesion"] = (
        f"{out['les_verdict']} — with the expert-marked lesion removed, the published model still calls {still} "
        f"of the {s['n']:,} BRISC tumour scans a tumour ({FILLS.get(first, first)}; called no tumour: "
        + ", ".join(f"{rate_text(o[f]['removed_notumor'])} {FILL_SHORT.get(f, f)}" for f in fills)
        + f"); a same-shaped region removed elsewhere instead turns {rate_text(o[first]['control_notumor'])} into "
        "no tumour."
    )
    v = lesion.get("validation") or {}
    vm = (v.get("models") or {}).get(f"published: {single}")
    if vm:
        vo = vm["overall"]
        out |= {
            "les_val_n": f"{v['n']:,}",
            "les_val_masks": f"the {v['keep']:.0%} most confident published weak masks (ranked by {v['filter']})",
            "les_val_dilation": f"{v['dilation']:.0%}",
            "les_val_summary": (
                f"on the {v['n']:,} Kaggle validation tumour images with a trusted weak mask, the published single "
                "model calls "
                + "; ".join(
                    f"{rate_text(vo[f]['removed_notumor'])} no tumour with the lesion removed and "
                    f"{rate_text(vo[f]['control_notumor'])} with the control removed ({FILL_SHORT.get(f, f)})"
                    for f in v["methods"]
                    if f in vo
                )
            ),
        }
    return out


def _measure_frame(rows: list[tuple[dict, Mapping]], methods, measure: str) -> pd.DataFrame:
    """One measure (``removed_notumor``, ``control_notumor``, ``control_kept``) as a table: one row per
    ``(leading cells, scores)`` of ``rows``, one column per fill, each rate with its Wilson interval."""
    return pd.DataFrame(
        [{**lead, **{FILL_SHORT.get(f, f): rate_text(d[f][measure]) for f in methods if f in d}} for lead, d in rows]
    )


#: The tables' captions per measure.
CAPTIONS = {
    "removed_notumor": "Lesion removed → called no tumour",
    "control_notumor": "Control removed → called no tumour",
    "control_kept": "Control removed → true class kept",
}


def lesion_rates_tables(lesion: Mapping, single: str | None, block: str = "models") -> list[tuple[str, pd.DataFrame]]:
    """The published models' rates (``lesion.json[block]``: ``models``, the expert masks, or ``validation``)
    as ``(caption, frame)`` tables, one per measure (lesion removed -> no tumour, control removed -> no
    tumour, -> class kept): a row per model, a column per fill, each rate in percent with its Wilson
    95% interval. The captions name the scan and control counts."""
    scores = lesion["models"] if block == "models" else lesion[block]["models"]
    methods = lesion["methods"] if block == "models" else lesion[block]["methods"]
    entries = published_entries(scores, single)
    if not entries:
        return []
    rows = [({"model": label}, scores[key]["overall"]) for key, label in entries]
    first = scores[entries[0][0]]["overall"][methods[0]]
    counts = {
        "removed_notumor": f"{first['removed_notumor']['n']:,} scans",
        "control_notumor": f"{first['control_notumor']['n']:,} scans with a control",
        "control_kept": f"{first['control_kept']['n']:,} scans with a control",
    }
    return [(f"{CAPTIONS[k]} ({counts[k]}; % [95% CI])", _measure_frame(rows, methods, k)) for k in CAPTIONS]


def lesion_groups_tables(scores: Mapping) -> list[tuple[str, pd.DataFrame]]:
    """One model's rates (``lesion.json["models"][key]``) per class and per view, as `lesion_rates_tables`:
    a row per class, then per view, with its scan count and the share of its original scans classified
    correctly."""
    rows = []
    for by, names in (("per_class", PRETTY), ("per_view", VIEWS)):
        for g, d in scores[by].items():
            lead = {
                "class or view": names.get(g, g),
                "scans": d["original"]["correct"]["n"],
                "original correct": rate_text(d["original"]["correct"]),
            }
            rows.append((lead, d))
    return [(f"{CAPTIONS[k]} (% [95% CI])", _measure_frame(rows, scores["methods"], k)) for k in CAPTIONS]


# ------------------------------------------------------------------------------------------- the lesion study
#: Every key `study_glue` returns, collected or not.
STUDY_KEYS = ("les_study_status", "les_study_rule", "les_study_choice", "les_study_summary")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def study_glue(study: Mapping | None) -> dict[str, str]:
    """The lesion study (``rq.json["lesion"]``, `tumorlens.experiments.rq.lesion_study`) in words: the
    rule that chooses a recipe (validation only), the choice, and each recipe beside the published
    baseline; a one-line "not yet collected" without the block."""
    if not study or not study.get("rows"):
        line = (
            "not yet collected for these results: `tumorlens collect` writes it into rq.json once the study's runs "
            "and their lesion tests are published"
        )
        return dict.fromkeys(STUDY_KEYS, line)
    rule, rows = study["rule"], study["rows"]
    base = rows[0]
    n_tags = len({r["tag"] for r in rows[1:]})
    out = {
        "les_study_status": f"{n_tags} recipes beside the published baseline ({base['model']})",
        "les_study_rule": (
            f"a recipe qualifies when its validation accuracy is at most {100 * rule['max_val_accuracy_drop']:.1f} "
            f"points below the baseline's and its validation control → no tumour rate (Telea) is at most "
            f"{rule['max_val_control_notumor']:.0%}; among those, the one with the highest mean validation "
            "lesion removed → no tumour rate (Telea and ring fill) is chosen if it beats the baseline's. No BRISC "
            "or test score enters the choice"
        ),
    }
    qualified = study.get("qualified") or []
    choice = study.get("choice")
    out["les_study_choice"] = (
        f"the rule chooses {choice} (qualified: {', '.join(qualified)})"
        if choice
        else "the rule chooses no recipe: the published recipe stays"
        + (f" (qualified but not better: {', '.join(qualified)})" if qualified else " (none qualified)")
    )
    first = (study.get("methods") or ["telea"])[0]
    parts = []
    for r in rows[1:]:
        if r.get("seed") not in (None, base.get("seed")):  # the other seeds: the over-seeds tables
            continue
        parts.append(
            f"{r['tag']}: lesion removed → no tumour {_pct(r.get(f'removed_notumor_{first}'))} (baseline "
            f"{_pct(base.get(f'removed_notumor_{first}'))}), control → no tumour "
            f"{_pct(r.get(f'control_notumor_{first}'))}, official accuracy {_pct(r.get('official_accuracy'))} "
            f"(baseline {_pct(base.get('official_accuracy'))})"
        )
    seed = f" at the baseline's seed ({base['seed']})" if base.get("seed") is not None else ""
    out["les_study_summary"] = f"On the expert masks ({FILL_SHORT.get(first, first)}){seed}: " + "; ".join(parts)
    return out


def study_tables(study: Mapping) -> list[tuple[str, pd.DataFrame]]:
    """The lesion study's rows (``rq.json["lesion"]["rows"]``) as three ``(caption, frame)`` tables, one
    recipe a row, the published baseline first: what the choice reads (validation), the test scores
    (official, de-duplicated, external), and the expert-mask lesion rates per fill. Rates in percent."""
    rows = study["rows"]
    methods = study.get("methods") or list(FILL_SHORT)

    def frame(cols: Mapping[str, str]) -> pd.DataFrame:
        out = []
        for r in rows:
            row = {"recipe": r["tag"], "run": r["model"]}
            for key, name in cols.items():
                if any(x.get(key) is not None for x in rows):
                    row[name] = None if r.get(key) is None else _pct(r[key])
            out.append(row)
        return pd.DataFrame(out)

    val = {"val_accuracy": "validation accuracy"}
    for f in ("telea", "ring"):
        val[f"val_removed_notumor_{f}"] = f"removed → no tumour ({FILL_SHORT[f]})"
        val[f"val_control_notumor_{f}"] = f"control → no tumour ({FILL_SHORT[f]})"
    test = {
        "official_accuracy": "official accuracy",
        "official_macro_f1": "official macro-F1",
        "dedup_accuracy": "de-duplicated accuracy",
        "dedup_macro_f1": "de-duplicated macro-F1",
        "external_accuracy": "external accuracy",
        "external_notumor_recall": "external no tumour recall",
        **{f"external_{v}": f"external {v}" for v in ("axial", "coronal", "sagittal")},
    }
    expert = {"original_notumor": "original → no tumour"}
    short = {"removed_notumor": "removed → no tumour", "control_notumor": "control → no tumour"}
    short["control_kept"] = "control → class kept"
    for f in methods:
        expert |= {f"{k}_{f}": f"{name} ({FILL_SHORT.get(f, f)})" for k, name in short.items()}
    return [
        ("The lesion study on the Kaggle validation split (what the choice reads)", frame(val)),
        ("The same recipes on the test sets (reported, never used to choose)", frame(test)),
        ("The same recipes on the expert masks (BRISC 2025): lesion-removal rates per fill", frame(expert)),
    ]


def recipe_table(tags, study: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """What each recipe of the lesion study changes (`tumorlens.experiments.jobs.COUNTERFACTUAL_STUDY`,
    or ``study``): one row per tag, its settings as ``key = value``."""
    study = COUNTERFACTUAL_STUDY if study is None else study
    return pd.DataFrame(
        [
            {"recipe": t, "settings changed": "; ".join(f"{k} = {v}" for k, v in study[t].items())}
            for t in tags
            if t in study
        ]
    )


# ------------------------------------------------------------------------------- the study's recipe over seeds
LABEL = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
#: Measures of `tumorlens.experiments.rq.lesion_recipe_statistics`'s ``over_seeds``, as the table says them.
_SEED_MEASURES = {
    "official_accuracy": "official accuracy",
    "official_macro_f1": "official macro-F1",
    "dedup_accuracy": "de-duplicated accuracy",
    "dedup_macro_f1": "de-duplicated macro-F1",
    "external_accuracy": "BRISC accuracy",
    "external_no_copy_accuracy": "BRISC accuracy, no near-copy in Training",
    "external_notumor_recall": "BRISC no tumour recall",
}


def _measure_name(key: str) -> str:
    """``lesion removed:telea->notumor`` -> ``lesion test: removed (Telea) → no tumour``."""
    if key.startswith("lesion "):
        version = key[len("lesion ") :].removesuffix("->notumor")
        kind, _, fill = version.partition(":")
        return f"lesion test: {kind}" + (f" ({FILL_SHORT.get(fill, fill)})" if fill else "") + " → no tumour"
    return _SEED_MEASURES.get(key, key)


def _mean_sd(s: Mapping | None) -> str | None:
    if not s or not s.get("n"):
        return None
    sd = s.get("sd")
    spread = "" if sd is None or sd != sd else f" ± {100 * sd:.1f}"  # NaN for one seed
    return f"{100 * s['mean']:.1f}{spread} (n = {s['n']})"


def _diff_text(d: Mapping | None, key: str = "diff", lo: str = "lo", hi: str = "hi") -> str | None:
    if not d or d.get(key) is None or d[key] != d[key]:
        return None
    return f"{100 * d[key]:+.1f} [{100 * d[lo]:+.1f}, {100 * d[hi]:+.1f}]"


def statistics_tables(stats: Mapping) -> list[tuple[str, pd.DataFrame]]:
    """A study recipe against today's over the seeds (``rq.json["lesion"]["statistics"][tag]``,
    `tumorlens.experiments.rq.lesion_recipe_statistics`) as ``(caption, frame)`` tables: each measure's mean
    ± sd over the seeds (percent) for both recipes, and per seed the paired differences (recipe − today's,
    percentage points, 95% bootstrap interval) on the official and de-duplicated test sets, on BRISC
    (all, no near-copy, no tumour recall) and on the lesion-removal test. Empty without seeds."""
    if not stats.get("seeds"):
        return []
    over = stats["over_seeds"]
    keys = list(dict.fromkeys([*over.get("recipe", {}), *over.get("today", {})]))
    means = pd.DataFrame(
        [
            {
                "measure": _measure_name(k),
                f"{stats['recipe']} (mean ± sd, %)": _mean_sd(over.get("recipe", {}).get(k)),
                "today's recipe (mean ± sd, %)": _mean_sd(over.get("today", {}).get(k)),
            }
            for k in keys
        ]
    )
    rows = []
    for r in stats["per_seed"]:
        cells = {"seed": r["seed"]}
        for c in r.get("rows", []):
            if c["metric"] in ("accuracy", "macro_f1"):
                name = f"{'official' if c['test_set'] == 'official' else 'de-duplicated'} {LABEL[c['metric']]}"
                cells[name] = _diff_text(c, "diff", "ci_lo", "ci_hi")
        ext = r.get("external") or {}
        cells["BRISC accuracy"] = _diff_text(ext.get("all"))
        cells["BRISC, no near-copy"] = _diff_text(ext.get("no_copy"))
        cells["BRISC no tumour recall"] = _diff_text(ext.get("notumor_recall"))
        for version, d in (r.get("lesion") or {}).items():
            if version.startswith("removed:"):
                cells[_measure_name("lesion " + version)] = _diff_text(d)
        rows.append(cells)
    seeds = ", ".join(str(s) for s in stats["seeds"])
    return [
        (f"{stats['recipe']} and today's recipe over seeds {seeds}: mean ± sd (%)", means),
        (
            f"{stats['recipe']} − today's recipe, per seed: paired difference in points [95% bootstrap CI] "
            "on the same images",
            pd.DataFrame(rows),
        ),
    ]
