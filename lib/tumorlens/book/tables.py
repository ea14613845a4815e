"""Tables for the notebooks and the book, as pandas DataFrames built from results files (render only)."""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from tumorlens.book.figures import PRETTY
from tumorlens.book.pages import guard_set_name, read_published_models
from tumorlens.book.text import POOLING_NAMES, ci_text, diff_text, pct_ci_text, share_text
from tumorlens.config import CLASSES

__all__ = [
    "Table",
    "failure_table",
    "show",
    "book_frame",
    "setup_display",
    "scan_table",
    "audit_table",
    "metrics_table",
    "segmentation_table",
    "captioned",
    "methods_table",
    "localisation_table",
    "view_mix_table",
    "plane_estimate_table",
    "systems_table",
    "comparisons_table",
    "runs_table",
    "split_runs_table",
    "seeds_table",
    "explain_seeds_table",
    "costs_table",
    "robustness_frame",
    "bench_table",
    "external_systems_table",
    "class_report_table",
    "view_table",
    "overlap_table",
    "provenance",
    "records_table",
    "guard_table",
]


#: What a missing cell shows, and the footnote that says so under the table.
MISSING = "—"
MISSING_NOTE = "— : not measured or not applicable for this row."


def _cell(v, precision: int) -> str:
    """One cell as the book prints it: missing values as `MISSING`, whole numbers without ``.0`` (with a
    thousands separator from 10,000), other floats to ``precision`` decimals, text as it is."""
    import math
    import numbers

    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, numbers.Real):
        if math.isinf(v):
            return str(v)
        return f"{v:.{precision}f}"
    return str(v)


def _column(col: "pandas.Series", precision: int) -> list[str]:  # noqa: F821
    """A column's cells as text (`_cell`); a float column whose values are all whole numbers (counts
    that a missing cell turned into floats, e.g. 930308.0) prints as whole numbers."""
    import math

    values = list(col)
    floats = [v for v in values if isinstance(v, float) and not math.isnan(v) and not math.isinf(v)]
    whole = bool(floats) and all(v.is_integer() for v in floats) and pd.api.types.is_float_dtype(col.dtype)
    if whole:
        return [_cell(int(v), precision) if isinstance(v, float) and v == v else _cell(v, precision) for v in values]
    # as many decimals as the column's values carry (a table function that rounded to 3 prints 3), at most precision
    digits = max(
        (next(d for d in range(precision + 1) if abs(round(v, d) - v) < 1e-9 or d == precision) for v in floats),
        default=precision,
    )
    return [_cell(v, precision) if not isinstance(v, float) else _float(v, digits) for v in values]


def _float(v: float, precision: int) -> str:
    import math

    return MISSING if math.isnan(v) else str(v) if math.isinf(v) else f"{v:.{precision}f}"


def book_frame(frame: "pandas.DataFrame") -> "pandas.DataFrame":  # noqa: F821
    """``frame`` with its index as ordinary leading columns (a default 0, 1, 2, ... index dropped), as the
    book shows every table: no index column that looks like data, every label a column header."""
    df = frame.copy()
    default = isinstance(df.index, pd.RangeIndex) and df.index.name is None and df.index.start == 0
    if default:
        return df.reset_index(drop=True)
    names = [n if n is not None else "" for n in df.index.names]
    df.index = df.index.set_names([f"__level{i}" if not n else n for i, n in enumerate(names)])
    df = df.reset_index()
    return df.rename(columns={f"__level{i}": "" for i in range(len(names))})


#: Values and headers that the files spell for code, as the book prints them.
LABELS = {
    "macro_f1": "macro-F1",
    "dedup": "de-duplicated",
    "notumor": "no tumour",
    "no_tumor": "no tumour",
    "notumor_recall": "no tumour recall",
}
_NUMERIC = __import__("re").compile(r"^[+\-−]?[\d.,]+(%| points)?( [\[(±].*)?$|^—$")


def _kind(cells: Sequence[str]) -> str:
    """How a column is set: ``num`` (numbers, intervals: right-aligned, never broken), ``wrap`` (long
    text: broken over lines) or ``text``."""
    filled = [c for c in cells if c != MISSING]
    if filled and all(_NUMERIC.match(c) for c in filled):
        return "num"
    return "wrap" if any(len(c) > 40 for c in filled) else "text"


class Table:
    """A table as the book prints it (`book_frame`): no index column, missing cells as "—" with a
    footnote, numbers formatted, inside a block that scrolls sideways when the table is wider than
    the page; an optional caption above and notes below. ``to_html()`` / ``_repr_html_`` render it;
    ``frame`` is the data."""

    def __init__(self, frame, caption: str = "", notes: Sequence[str] = (), precision: int = 4):
        self.frame, self.caption, self.notes, self.precision = book_frame(frame), caption, list(notes), precision

    def to_html(self) -> str:
        import html

        df = self.frame
        cols = [[*_column(df.iloc[:, i], self.precision)] for i in range(df.shape[1])]
        cols = [[LABELS.get(v, v) for v in c] for c in cols]
        heads = [LABELS.get(str(h), str(h)) for h in df.columns]
        notes = list(self.notes)
        if len(df) >= 4:  # a text column with one value in every row says it once, under the table
            same = [j for j, c in enumerate(cols) if len(set(c)) == 1 and not _NUMERIC.match(c[0]) and heads[j]]
            if same and len(same) < len(cols) - 1:
                notes.insert(0, "In every row: " + "; ".join(f"{heads[j]} {cols[j][0]}" for j in same) + ".")
                keep = [j for j in range(len(cols)) if j not in same]
                cols, heads = [cols[j] for j in keep], [heads[j] for j in keep]
        if any(MISSING in c for c in cols) and MISSING_NOTE not in notes:
            notes.append(MISSING_NOTE)
        kinds = [_kind(c) for c in cols]
        head = "".join(f'<th class="{k}">{html.escape(h)}</th>' for h, k in zip(heads, kinds))
        rows = "".join(
            "<tr>" + "".join(f'<td class="{k}">{html.escape(c[i])}</td>' for c, k in zip(cols, kinds)) + "</tr>"
            for i in range(len(df))
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        foot = "".join(f'<p class="tl-table-note">{html.escape(n)}</p>' for n in notes)
        return (
            f'<div class="tl-table-wrap"><table class="dataframe tl-table">{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>{foot}</div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.frame.to_string(index=False)


def show(frame, caption: str = "", notes: Sequence[str] = (), precision: int = 4) -> Table:
    """`Table` of ``frame`` (a DataFrame, a `Table`, or a Styler whose data and caption are taken)."""
    if isinstance(frame, Table):
        return Table(frame.frame, caption or frame.caption, [*frame.notes, *notes], precision)
    if hasattr(frame, "data") and hasattr(frame, "caption"):  # a pandas Styler
        caption = caption or (frame.caption or "")
        frame = frame.data
    return Table(frame, caption, notes, precision)


def setup_display() -> None:
    """Make every DataFrame and Styler a notebook displays render as a `Table` (once per notebook; every
    book page runs it, `tumorlens.book.build.PAGE_SETUP`). Outside IPython, nothing happens."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the notebooks' kernel
        return
    ip = get_ipython()
    if ip is None:
        return
    html = ip.display_formatter.formatters["text/html"]
    html.for_type(pd.DataFrame, lambda df: show(df).to_html())
    html.for_type("pandas.io.formats.style.Styler", lambda st: show(st).to_html())


def captioned(frame: "pandas.DataFrame", caption: str, precision: int = 4) -> Table:  # noqa: F821
    """A table with a caption above it, styled like the book's other tables (numbers to ``precision``)."""
    return Table(frame, caption, precision=precision)


def scan_table(report_dict: Mapping) -> "pandas.DataFrame":  # noqa: F821

    rows = {
        split: {PRETTY[c]: v[c] for c in CLASSES} | {"total": v["total"]} for split, v in report_dict["counts"].items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")


def audit_table(audit_dict: Mapping) -> "pandas.DataFrame":  # noqa: F821
    """Per class: Testing images, those with an exact / near copy in Training, and the de-duplicated count."""

    t = audit_dict["testing_vs_training"]
    rows = {PRETTY.get(k, k): v for k, v in {**t["per_class"], "total": t["total"]}.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = [
        "Testing images",
        "exact copy in Training",
        "near copy in Training",
        "any copy in Training",
        "kept (de-duplicated)",
    ]
    df["share with a copy"] = (df["any copy in Training"] / df["Testing images"]).map("{:.0%}".format)
    return df.rename_axis("class")


def metrics_table(metrics: Mapping[str, Mapping], small: int = 20) -> Table:
    """One row per test set (official, dedup): n, accuracy, macro-F1, per-class F1. A class with fewer
    than ``small`` images in a test set shows its count beside its F1 (marked, with a note): one image
    moves such a score a lot, and no interval is given for it."""

    rows, few = {}, False
    for name, m in metrics.items():
        if not m.get("n"):
            continue
        row = {"images": m["n"], "accuracy": round(m["accuracy"], 4), "macro-F1": round(m["macro_f1"], 4)}
        for c in CLASSES:
            d = m["per_class"][c]
            n = d.get("support")
            mark = n is not None and n < small
            few |= mark
            row[f"F1 {PRETTY[c]}"] = f"{d['f1']:.4f}" + (f" (n = {n})*" if mark else "")
        rows[name] = row
    # per-column types: image counts stay integers
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("test set")
    notes = [f"* fewer than {small} images of the class in this test set: no interval, read with care."] if few else []
    return Table(frame, notes=notes)


def segmentation_table(summary: Mapping, prefix: str = "") -> "pandas.DataFrame":  # noqa: F821
    """Per class: n, mean and median (quartiles) Dice and IoU for the binarised map and map + GrabCut, the pointing
    game (strict and within the tolerance) and its map-free baseline (pointing at the head's centre)."""

    rows = {}
    for cls, d in summary["per_class"].items():
        if f"{prefix}dice_cam" not in d or not d[f"{prefix}dice_cam"]:
            continue
        row = {"images": d["n"], "classified correctly": f"{d['accuracy']:.0%}"}
        for kind, name in (("cam", "map"), ("grabcut", "map+GrabCut")):
            for metric in ("dice", "iou"):
                s = d[f"{prefix}{metric}_{kind}"]
                row[f"{name} {metric.upper() if metric == 'iou' else 'Dice'} mean"] = round(s["mean"], 3)
                row[f"{name} {metric.upper() if metric == 'iou' else 'Dice'} median [IQR]"] = (
                    f"{s['median']:.3f} [{s['q1']:.2f}-{s['q3']:.2f}]"
                )
        tol = summary.get("pointing_tolerance_px")
        for key, name in ((f"{prefix}pointing", "pointing game"), ("centre_pointing", "head-centre baseline")):
            row[name] = f"{d[key]:.0%}" if d.get(key) is not None else "n/a"
            if tol and d.get(f"{key}_near") is not None:
                row[f"{name} (≤{tol} px)"] = f"{d[f'{key}_near']:.0%}"
        rows[PRETTY.get(cls, cls)] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("class")


#: Column names of the failure categories (`tumorlens.experiments.rq.FAILURES`).
FAILURE_NAMES = {
    "good": "good",
    "outline": "found, outline off",
    "missed": "missed (peak off the lesion)",
    "no_tumour": "called no tumour",
}
#: ... and of the outline failures split by area (`tumorlens.experiments.rq.OUTLINE_SPLIT`).
OUTLINE_NAMES = {"outline_too_large": "outline too large", "outline_too_small": "outline too small"}
_VIEW_NAMES = {"ax": "axial", "co": "coronal", "sa": "sagittal"}


def failure_table(failures: Mapping) -> "pandas.DataFrame":  # noqa: F821
    """Where the adopted weak mask fails (``rq.json["rq3"]["failures"]``): per class and view (then per
    class and per view over the others, and all images), the images, mean and median Dice and the share of
    each failure category, and of wrong tumour classes."""

    def row(label: tuple[str, str], d: Mapping) -> dict:
        out = {"class": label[0], "view": label[1], "images": d["n"], "Dice mean": round(d["dice_mean"], 3)}
        out["Dice median"] = round(d["dice_median"], 3)
        out |= {name: share_text(d[k]) for k, name in FAILURE_NAMES.items()}
        for k, name in OUTLINE_NAMES.items():  # the outline failures by area, where the rows record it
            if k in d:
                out[name] = share_text(d[k])
        return out | {"wrong tumour class": share_text(d["wrong_class"])}

    rows = [
        row((PRETTY.get(d["class"], d["class"]), _VIEW_NAMES.get(d["view"], d["view"])), d)
        for d in failures["by_class_view"]
    ]
    rows += [row((PRETTY.get(d["class"], d["class"]), "all"), d) for d in failures["by_class"]]
    rows += [row(("all", _VIEW_NAMES.get(d["view"], d["view"])), d) for d in failures["by_view"]]
    if failures.get("all"):
        rows.append(row(("all", "all"), failures["all"]))
    return pd.DataFrame(rows).set_index(["class", "view"])


def methods_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """The explain chapter's comparison (``summary.json["methods"]``): per map and mask kind, Dice mean
    [95% CI], median, IoU, Dice per class, the paired Dice difference to the paper's row [95% CI],
    the pointing game [95% CI] and its difference to the head-centre baseline, the tuning-half Dice,
    and milliseconds per image."""

    out = []
    for r in rows:
        row = {
            "map": r["map"] + (" (paper)" if r["map"] == "gradcam@top" else ""),
            "mask": {"cam": "map only", "grabcut": "+ GrabCut"}[r["mask"]],
            "Dice mean [95% CI]": ci_text(r["dice_mean"], r["dice_lo"], r["dice_hi"], digits=3),
            "Dice median": round(r["dice_median"], 3),
            "IoU mean": round(r["iou_mean"], 3),
        }
        for cls in CLASSES:
            if f"dice_{cls}" in r:
                row[f"Dice {PRETTY[cls]}"] = round(r[f"dice_{cls}"], 3)
        row["Dice vs paper [95% CI]"] = (
            "reference"
            if r["paper"]
            else ci_text(r["dice_vs_paper"], r["dice_vs_paper_lo"], r["dice_vs_paper_hi"], digits=3, signed=True)
        )
        row["pointing [95% CI]"] = pct_ci_text(r["pointing"], r["pointing_lo"], r["pointing_hi"])
        row["pointing (tolerance)"] = f"{r['pointing_near']:.0%}"
        row["pointing vs head centre [95% CI]"] = pct_ci_text(
            r["pointing_vs_centre"], r["pointing_vs_centre_lo"], r["pointing_vs_centre_hi"], signed=True
        )
        row["tuning-half Dice"] = round(r["tune_dice"], 3) if r.get("tune_dice") is not None else "—"
        row["ms / image"] = round(r["ms_per_image"]) if r.get("ms_per_image") is not None else "—"
        out.append(row)
    return pd.DataFrame(out).set_index(["map", "mask"])


def view_mix_table(mix: Mapping[str, Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Per class (`tumorlens.data.annotations.view_sequence_mix`): the labelled images and the share of
    each view and of each apparent sequence, with Wilson 95% intervals."""
    out = {}
    for cls, m in mix.items():
        row = {"labelled": m["n"]}
        for key in ("view", "sequence"):
            for v, d in m[key].items():
                row[v] = f"{d['k']} ({pct_ci_text(d['share'], d['lo'], d['hi'])})"
        out[PRETTY[cls]] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("class")


def localisation_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """The localisation ablation (``localisation.json["rows"]``): per head (run) and map, the classification
    scores (official, de-duplicated, validation macro-F1) beside the pointing game and the Dice of the
    map alone and with GrabCut on the report half, each [95% CI], and the paired Dice and pointing
    differences from the first run (the reference)."""

    def diff(r: Mapping, key: str, pct: bool = False) -> str:
        d = r.get(f"{key}_diff")
        if d is None:
            return "reference"
        return (pct_ci_text if pct else lambda v, lo, hi, signed: ci_text(v, lo, hi, digits=3, signed=signed))(
            d["diff"], d["lo"], d["hi"], signed=True
        )

    out = []
    for r in rows:
        num = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        out.append(
            {
                "head": POOLING_NAMES.get(r["pooling"], r["pooling"])
                + (" (standard)" if r["pooling"] == "gap" else ""),
                "map": r["map"],
                "official accuracy": num(r["accuracy"]),
                "de-dup accuracy": num(r["dedup_accuracy"]),
                "val macro-F1": num(r["val_macro_f1"]),
                "pointing [95% CI]": pct_ci_text(r["pointing"]["value"], r["pointing"]["lo"], r["pointing"]["hi"]),
                "pointing vs reference": diff(r, "pointing", pct=True),
                "Dice map only [95% CI]": ci_text(
                    r["dice_cam"]["value"], r["dice_cam"]["lo"], r["dice_cam"]["hi"], digits=3
                ),
                "Dice + GrabCut [95% CI]": ci_text(
                    r["dice_grabcut"]["value"], r["dice_grabcut"]["lo"], r["dice_grabcut"]["hi"], digits=3
                ),
                "Dice + GrabCut vs reference": diff(r, "dice_grabcut"),
            }
        )
    return pd.DataFrame(out).set_index(["head", "map"])


def systems_table(results: Mapping, test_set: str = "official") -> "pandas.DataFrame":  # noqa: F821
    """Accuracy and macro-F1 with 95% bootstrap CIs per system (``rq.json["rq2"]``); ``external``: the
    systems scored on the external set by `tumorlens external` (with the no-tumour recall)."""

    rows = {}
    for name, s in results["systems"].items():
        m = s.get(test_set) or {}
        if not m.get("n"):
            continue
        if test_set == "external":
            nt = m["notumor_recall"]
            rows[name] = {
                "images": m["n"],
                "accuracy [95% CI]": ci_text(m["accuracy"], m["accuracy_lo"], m["accuracy_hi"]),
                "macro-F1 [95% CI]": ci_text(m["macro_f1"], m["macro_f1_lo"], m["macro_f1_hi"]),
                "no-tumour recall": "n/a" if nt is None else f"{nt:.3f}",
            }
            continue
        rows[name] = {
            "images": m["n"],
            "accuracy [95% CI]": ci_text(m["accuracy"], m["ci"]["accuracy"]["lo"], m["ci"]["accuracy"]["hi"]),
            "macro-F1 [95% CI]": ci_text(m["macro_f1"], m["ci"]["macro_f1"]["lo"], m["ci"]["macro_f1"]["hi"]),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("system")


def comparisons_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """One row per comparison: systems, test set, metric, difference [95% CI], McNemar p.

    McNemar's test compares the two systems' correct/incorrect calls, so its p-value belongs to the
    accuracy rows; macro-F1 rows show only their bootstrap interval."""

    return pd.DataFrame(
        [
            {
                "system": r["a"],
                "vs": r["b"],
                "test set": r.get("test_set", ""),
                "metric": r["metric"],
                "images": r["n"],
                "value": round(r["value_a"], 4),
                "vs value": round(r["value_b"], 4),
                "difference [95% CI]": diff_text(r),
                "McNemar p": f"{r['p_mcnemar']:.3g}" if r["metric"] == "accuracy" else "—",
            }
            for r in rows
        ]
    )


def runs_table(runs: Mapping[str, Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Every run: accuracy and macro-F1 [95% CI] on both test sets (``rq.json["runs"]``), and on the
    external set with its no-tumour recall when `tumorlens external` scored the runs, with how many
    seeds its recipe was run with and their spread (a single-seed row is marked as such: a rerun can
    move it by about the spread of the recipes run with several, see the rerun check)."""

    by_recipe: dict[str, list[float]] = {}
    for name, r in runs.items():
        by_recipe.setdefault(name.rpartition("/seed-")[0], []).append(r["official_accuracy"])
    rows = []
    for name, r in sorted(runs.items()):
        accs = by_recipe[name.rpartition("/seed-")[0]]
        row = {
            "run": name,
            "parameters": f"{r['parameters']:,}",
            "seeds": len(accs),
            "seed spread (official accuracy)": f"{max(accs) - min(accs):.4f}" if len(accs) > 1 else "single seed",
        }
        for t, label in (("official", "official"), ("dedup", "de-duplicated")):
            for m, ml in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
                row[f"{ml} ({label})"] = ci_text(r[f"{t}_{m}"], r[f"{t}_{m}_lo"], r[f"{t}_{m}_hi"])
        if any("external_accuracy" in v for v in runs.values()):  # scored by `tumorlens external`
            e = "external_accuracy" in r
            row["accuracy (external)"] = (
                ci_text(r["external_accuracy"], r["external_accuracy_lo"], r["external_accuracy_hi"])
                if e
                else "not scored"
            )
            nt = r.get("external_notumor_recall")
            row["no-tumour recall (external)"] = f"{nt:.3f}" if nt is not None else "not scored"
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def split_runs_table(runs: "pandas.DataFrame") -> tuple["pandas.DataFrame", "pandas.DataFrame"]:  # noqa: F821
    """`runs_table` in two narrower tables: per recipe (parameters, seeds, seed spread) and per run the
    official and de-duplicated scores (the external columns are the external chapter's)."""
    per_recipe = ["parameters", "seeds", "seed spread (official accuracy)"]
    recipes = runs[per_recipe].copy()
    recipes.index = [name.rpartition("/seed-")[0] for name in runs.index]
    recipes = recipes[~recipes.index.duplicated()]
    recipes.index.name = "recipe"
    scores = runs[[c for c in runs.columns if c not in per_recipe and "external" not in c]]
    return recipes, scores


def seeds_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Mean ± sd over seeds per variant, test set and metric (``rq.json["rq1"]["seeds_table"]``)."""

    out = {}
    for r in rows:
        key = (r["variant"], r["test_set"])
        out.setdefault(key, {"seeds": r["n"]})[r["metric"]] = (
            f"{r['mean']:.4f} ± {r['sd']:.4f}" if r["n"] > 1 else f"{r['mean']:.4f}"
        )
    df = pd.DataFrame.from_dict(out, orient="index")
    df.index.names = ["variant", "test set"]
    return df


def plane_estimate_table(estimate: Mapping) -> "pandas.DataFrame":  # noqa: F821
    """The estimated slice planes of the training images per class (``rq.json["views"]["estimate"]``,
    from the view-balance runs): count and share of each plane, and the training weight it gets."""
    rows = {}
    for cls in CLASSES:
        counts = estimate["train_counts"].get(cls)
        if not counts:
            continue
        total = sum(counts.values())
        row = {"images": f"{total:,}"}
        for plane, k in counts.items():
            row[plane] = f"{k:,} ({k / total:.0%})" if total else "0"
        for plane, w in estimate["weights"].get(cls, {}).items():
            row[f"weight {plane}"] = f"{w:.2f}"
        rows[PRETTY.get(cls, cls)] = row
    df = pd.DataFrame.from_dict(rows, orient="index").fillna("—")
    df.index.name = "class"
    return df


def explain_seeds_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """The explain step on one classifier recipe over its seeds (``rq.json["rq3"]["seeds"]["rows"]``): per
    seed the classifier's official accuracy, the adopted map and mask (each run chooses its own on the
    tuning half), its Dice [95% CI] on the report half, the same map without GrabCut and the paired
    GrabCut - map difference, the pointing game against the head centre, and the paper's Grad-CAM row."""

    def num(v, digits=3):
        return "—" if v is None else f"{v:.{digits}f}"

    out = []
    for r in rows:
        out.append(
            {
                "seed": r["seed"],
                "classifier": r["model"].split("/")[0],
                "official accuracy": num(r.get("official_accuracy"), 4),
                "adopted": r["adopted"],
                "Dice [95% CI]": ci_text(r["dice_mean"], r["dice_lo"], r["dice_hi"], digits=3),
                "median": num(r["dice_median"]),
                "map only": num(r["map_only_dice"]),
                "GrabCut − map [95% CI]": ci_text(
                    r["gc_minus_map"], r["gc_minus_map_lo"], r["gc_minus_map_hi"], digits=3, signed=True
                )
                if r.get("gc_minus_map") is not None
                else "—",
                "pointing": f"{r['pointing']:.0%}",
                "head centre": f"{r['centre_pointing']:.0%}",
                "paper's Grad-CAM + GrabCut": num(r["paper_dice"]),
            }
        )
    return pd.DataFrame(out).set_index("seed")


def costs_table(blocks: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Parameters and MFLOPs of each module per backbone (``block_costs.json``)."""

    df = pd.DataFrame(
        [
            {
                "backbone": b["backbone"],
                "feature map": "x".join(map(str, b["feature_map"])),
                "module": b["block"].upper() if b["block"] in ("se", "cbam", "mab", "sbr") else "ResPath",
                "parameters": f"{b['parameters']:,}",
                "MFLOPs": round(b["flops"] / 1e6, 2),
                "% of backbone parameters": round(100 * b["parameters_vs_backbone"], 2),
            }
            for b in blocks
        ]
    )
    return df.set_index(["backbone", "module"])


def robustness_frame(
    rows: Sequence[Mapping], test_set: str = "official", metric: str = "accuracy"
) -> "pandas.DataFrame":  # noqa: F821
    """Corruption x severity table of ``metric`` (accuracy, macro_f1, accuracy_drop or macro_f1_drop);
    cells read "value [95% CI]" when the rows carry intervals (``<metric>_lo``/``_hi``)."""

    rs = [r for r in rows if r["test_set"] == test_set]
    ci = all(f"{metric}_lo" in r for r in rs)

    def cell(r):
        return (
            ci_text(r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"], digits=3, ci_digits=3)
            if ci
            else round(r[metric], 4)
        )

    clean = next((cell(r) for r in rs if r["kind"] == "clean"), None)
    kinds = sorted({r["kind"] for r in rs} - {"clean"})
    sevs = sorted({r["severity"] for r in rs if r["kind"] != "clean"})
    table = {
        k: {s: next((cell(r) for r in rs if r["kind"] == k and r["severity"] == s), None) for s in sevs} for k in kinds
    }
    df = pd.DataFrame(table).T[sevs]
    df.columns = [f"severity {c}" for c in df.columns]
    df.insert(0, "clean", clean)
    df.index.name = "corruption"
    return df


def bench_table(bench: Mapping) -> Table:
    """A ``tumorlens bench`` result: accuracy and macro-F1 on both test sets, images per second
    (batched), and the explain-and-segment latency per image where measured. When the benchmark's
    single model is not the profile's published one (``models/<profile>/models.json``), a note under the
    table says so: its rows then describe an earlier model."""
    frame = pd.DataFrame.from_dict(
        {
            name: {
                "accuracy": round(s["official_accuracy"], 4),
                "macro-F1": round(s["official_macro_f1"], 4),
                "accuracy (dedup)": round(s["dedup_accuracy"], 4),
                "macro-F1 (dedup)": round(s["dedup_macro_f1"], 4),
                "images/s (batched)": round(s["images_per_second"], 1),
                "predict + map + mask, ms/image": round(s["explain_segment_ms_median"])
                if "explain_segment_ms_median" in s
                else "not measured",
            }
            for name, s in bench["systems"].items()
        },
        orient="index",
    ).rename_axis("system")
    notes = []
    published = read_published_models(bench.get("profile", "")) if bench.get("profile") else None
    ran = next((s.get("model") for s in bench["systems"].values() if s.get("model")), None)
    if published and ran and "/".join(str(ran).split("/")[-2:]) != published["single"]:
        notes.append(
            f"Measured on an earlier model: the benchmark's single model is {'/'.join(str(ran).split('/')[-2:])}, "
            f"the published one is {published['single']} (models/{bench['profile']}/models.json); the "
            "tumorlens rows are not the published models' scores (those are in the classification chapter). "
            "Rerun `tumorlens bench` to measure them."
        )
    return Table(frame, notes=notes)


def external_table(external: Mapping | None) -> "pandas.DataFrame":  # noqa: F821
    """Per external set and system (``external.json``): accuracy and macro-F1 [95% CI], no-tumour
    recall, and accuracy per view [95% CI] with its image count. Empty without a record."""

    rows = []
    for s in (external or {}).get("sets", []):
        for name, m in s["systems"].items():
            nt = m["notumor_recall"]
            row = {
                "set": s["name"],
                "system": name,
                "images": m["n"],
                "accuracy": ci_text(m["accuracy"], m["accuracy_lo"], m["accuracy_hi"]),
                "macro-F1": ci_text(m["macro_f1"], m["macro_f1_lo"], m["macro_f1_hi"]),
                "no-tumour recall": "n/a" if nt is None else f"{nt:.3f}",
            }
            for v, d in m["per_view"].items():
                row[f"{v} (n={d['n']})"] = ci_text(d["accuracy"], d["accuracy_lo"], d["accuracy_hi"])
            rows.append(row)
    return pd.DataFrame(rows).set_index(["set", "system"]) if rows else pd.DataFrame()


def _short_system(name: str) -> str:
    """``single: efficientnet_lite1/seed-43`` -> ``single model``; a soft vote -> ``soft-voting ensemble``."""
    return "single model" if name.startswith("single") else "soft-voting ensemble" if "voting" in name else name


def external_systems_table(systems: Mapping[str, Mapping], key: str | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Per system (``external.json``'s ``systems``, or ``brisc_overlap.json``'s with ``key`` ``all`` /
    ``no_copy``): images, accuracy and macro-F1 [95% CI], no tumour recall."""
    rows = []
    for name, m in systems.items():
        m = m.get(key) if key else m
        if not m:
            continue
        nt = m.get("notumor_recall")
        rows.append(
            {
                "system": _short_system(name),
                "models": name.partition(": ")[2] or name,
                "images": m["n"],
                "accuracy [95% CI]": ci_text(m["accuracy"], m["accuracy_lo"], m["accuracy_hi"]),
                "macro-F1 [95% CI]": ci_text(m["macro_f1"], m["macro_f1_lo"], m["macro_f1_hi"]),
                "no tumour recall": None if nt is None else f"{nt:.3f}",
            }
        )
    return pd.DataFrame(rows)


def class_report_table(per_class: Mapping[str, Mapping], small: int = 20) -> Table:
    """Precision, recall and F1 per class with the class's image count (a classification report's
    ``per_class``); classes with fewer than ``small`` images are marked: their scores rest on few images."""
    rows, few = [], False
    for c in CLASSES:
        d = per_class.get(c)
        if not d:
            continue
        mark = "*" if d["support"] < small else ""
        few |= bool(mark)
        rows.append(
            {
                "class": PRETTY[c],
                "images": f"{d['support']}{mark}",
                "precision": f"{d['precision']:.3f}",
                "recall": f"{d['recall']:.3f}",
                "F1": f"{d['f1']:.3f}",
            }
        )
    notes = [f"* fewer than {small} images: no interval is given, and one image moves the score a lot."] if few else []
    return Table(pd.DataFrame(rows), notes=notes)


def view_table(per_view: Mapping[str, Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Per view (an external score's ``per_view``): images, accuracy [95% CI] when given, no tumour recall."""
    rows = []
    for v, d in per_view.items():
        row = {"view": v, "images": d["n"]}
        if "accuracy_lo" in d:
            row["accuracy [95% CI]"] = ci_text(d["accuracy"], d["accuracy_lo"], d["accuracy_hi"])
        else:
            row["accuracy"] = f"{d['accuracy']:.4f}"
        if "n_notumor" in d:
            row["no tumour images"] = d["n_notumor"]
        nt = d.get("notumor_recall")
        row["no tumour recall"] = None if nt is None else f"{nt:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def overlap_table(s: Mapping, by: str = "per_class") -> "pandas.DataFrame":  # noqa: F821
    """The cross-release audit of one external set (``brisc_overlap.json["sets"][i]``), per class (or
    ``by="per_view"``) and in total: images, those with a copy in Kaggle Training (exact / near), with a
    copy in Kaggle Testing, and those kept (no copy in Training)."""
    rows = []
    for k, d in [*s[by].items(), ("total", s["total"])]:
        rows.append(
            {
                "class" if by == "per_class" else "view": PRETTY.get(k, k),
                "images": d["n"],
                "copy in Training": f"{d['any']} ({d['any'] / d['n']:.0%})" if d["n"] else "0",
                "of which exact": d["exact"],
                "copy in Testing": d["in_testing"],
                "no copy in Training (kept)": d["kept"],
            }
        )
    return pd.DataFrame(rows)


def guard_table(guard: Mapping) -> Table:
    """The input guard's record (``benchmarks/results/guard_<profile>.json``): per set, its images and
    the share flagged in all and by each check -- false alarms on the scans the model was made for, catch
    rates on what it was not."""
    rows = []
    for kind, block in (("false alarm", guard["false_alarms"]), ("catch", guard["catch"])):
        for name, d in block.items():
            rows.append(
                {
                    "images": guard_set_name(name) if kind == "false alarm" else name,
                    "rate": kind,
                    "n": d["n"],
                    "flagged": f"{d['flagged']:.1%}",
                    "by pixel checks": f"{d['by_pixel_checks']:.1%}",
                    "by background": f"{d['by_background']:.1%}",
                    "by features": f"{d['by_features']:.1%}",
                }
            )
    notes = [
        "False alarms: scans the model was made for, flagged. Catch rates: inputs it was not made for, flagged. "
        f"Each measured check's threshold is set at {guard['guard']['false_alarm_target_per_criterion']:.0%} false "
        "alarms on the Kaggle validation split; nothing is chosen on Testing or the other release."
    ]
    return Table(pd.DataFrame(rows), notes=notes)


def records_table(rows: Sequence[Mapping], precision: int = 4) -> Table:
    """Any list of flat records (e.g. a new results file's rows) as a book table: one column per key in
    order of appearance, nested values as compact text."""
    import json

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    flat = [{k: json.dumps(r.get(k)) if isinstance(r.get(k), (dict, list)) else r.get(k) for k in cols} for r in rows]
    return Table(pd.DataFrame(flat, columns=cols), precision=precision)


class _Html:
    def __init__(self, html: str):
        self.html = html

    def _repr_html_(self) -> str:
        return self.html


def provenance(items: Mapping[str, object], title: str = "Provenance") -> _Html:
    """A collapsed block (HTML ``<details>``) with ``items`` as a two-column table: where the numbers on a
    page come from (files, models, settings), one click away instead of a raw JSON dump."""
    import html

    def text(v) -> str:
        if isinstance(v, Mapping):
            return "; ".join(f"{k}: {text(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return ", ".join(text(x) for x in v)
        return str(v) if not isinstance(v, float) else f"{v:g}"

    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(text(v))}</td></tr>" for k, v in items.items())
    return _Html(
        f'<details class="tl-provenance"><summary>{html.escape(title)}</summary>'
        f'<div class="tl-table-wrap"><table class="dataframe tl-table"><tbody>{rows}</tbody></table></div></details>'
    )
