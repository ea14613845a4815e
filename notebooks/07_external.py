# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # External validation: BRISC 2025
#
# The Kaggle test split shares near-copies and acquisition habits with its training split, so a score
# on it says little about another collection of scans. This chapter scores the **published models**,
# without any retraining, tuning or choice, on the images of another release, BRISC 2025
# {cite:p}`fateh2025brisc`: per class, per view, and — because BRISC's authors collated their
# contrast-enhanced T1 images from public datasets that lacked masks, and the Kaggle set is such a
# compilation — again on the BRISC images that have **no near-copy** in the Kaggle Training split. Every
# number comes from `results/<profile>/external.json` (`tumorlens external`) and
# `results/<profile>/data/brisc_overlap.json` (the project's duplicate audit run across the two releases,
# `tumorlens.experiments.external.overlap_audit`).

# %% tags=["parameters"]
profile = "smoke"
results = "results/smoke"

# %%
from pathlib import Path

from IPython.display import Image
from myst_nb import glue

from tumorlens.book import figures, pages, tables
from tumorlens.book.text import view_mix_glue
from tumorlens.data.annotations import read_view_labels, view_sequence_mix
from tumorlens.utils.files import read_json

figures.setup_plotly()
res = Path(results)
rq = read_json(res / "rq.json", schema="rq")
external = pages.read_optional(res / "external.json", "external")
overlap = pages.read_overlap(res)
words = (
    pages.results_glue(res, profile)
    | pages.published_model_glue(res, profile)
    | pages.overlap_glue(overlap, external)
    | view_mix_glue(view_sequence_mix(read_view_labels()))
    | pages.guard_glue(pages.read_guard(profile))
)
for name, text in words.items():
    glue(name, text, display=False)
ext_set = external["sets"][0] if external and external["sets"] else None
ovl_set = overlap["sets"][0] if overlap and overlap["sets"] else None
single = next((k for k in ext_set["systems"] if k.startswith("single")), None) if ext_set else None

# %% [markdown]
# ## The published models on every image
#
# The published single model is **{glue:text}`pub_single_words`** ({glue:text}`pub_single`, from
# {glue:text}`pub_source`); the published ensemble soft-votes {glue:text}`pub_ensemble_words`. On the
# external images: {glue:text}`ext_summary`. On the official Kaggle test split the same single model
# scores {glue:text}`pub_single_acc` (profile {glue:text}`res_profile`, a reduced schedule on CPU cores;
# see the classification chapter).

# %%
if ext_set:
    display(tables.show(tables.external_systems_table(ext_set["systems"]), caption=f"{ext_set['name']}: all images"))
    m = ext_set["systems"][single]
    display(tables.show(tables.class_report_table(m["metrics"]["per_class"]), caption="Single model, per class"))
    display(tables.show(tables.view_table(m["per_view"]), caption="Single model, per view (from BRISC's file names)"))
    display(figures.confusion_matrix(m["metrics"]["confusion_matrix"], title=f"Single model on {ext_set['name']}"))
else:
    print("No external set was scored for these results (run `tumorlens external --profile <profile>`).")

# %% [markdown]
# ## How much of BRISC the Kaggle set already holds
#
# The project's leakage audit ({glue:text}`ovl_rule`: the rule that finds copies inside the Kaggle set)
# was run across the releases: every BRISC image against every Kaggle Training image (and, for the
# record, Testing). **{glue:text}`ovl_summary`.** The two releases share their sources: most BRISC
# tumour images have a near-copy among the Kaggle Testing images ({glue:text}`ovl_in_testing`), despite
# remapped intensities and other sizes, and the Kaggle split's own copies carry many of them into
# Training. A model that saw a near-copy of a BRISC image in training is not tested on new data by it.

# %%
if ovl_set:
    display(tables.show(tables.overlap_table(ovl_set), caption="BRISC images with a near copy in Kaggle, per class"))
    display(tables.show(tables.overlap_table(ovl_set, "per_view"), caption="The same, per view"))
else:
    print("The cross-release duplicate audit has not been run for these results (data/brisc_overlap.json).")

# %% [markdown]
# ## Every score again on the BRISC images with no copy in Training
#
# The single model scores {glue:text}`ovl_single_all` and {glue:text}`ovl_single_nocopy`. The
# predictions were recomputed from the published models for this (they reproduce `external.json`'s
# scores: {glue:text}`ovl_match`). The subset is small and its classes are unbalanced (almost every
# pituitary image has a copy), so its intervals are wide and its per-class scores rest on few images.

# %%
if ovl_set:
    display(
        tables.show(
            tables.external_systems_table(ovl_set["systems"], "no_copy"),
            caption=f"{ovl_set['name']}: the images with no copy in Kaggle Training",
        )
    )
    nocopy = next(v["no_copy"] for k, v in ovl_set["systems"].items() if k.startswith("single") and "no_copy" in v)
    display(tables.show(tables.class_report_table(nocopy["per_class"]), caption="Single model, per class (no copy)"))
    display(tables.show(tables.view_table(nocopy["per_view"]), caption="Single model, per view (no copy)"))

# %% [markdown]
# ## The confound: view and sequence
#
# In the Kaggle set the classes are confounded with how they were imaged. Of the hand-labelled
# no tumour Training slices (data chapter), {glue:text}`mix_nt_axial` are axial and {glue:text}`mix_nt_t1`
# look T1-weighted; of the labelled tumour slices, {glue:text}`mix_tumour_axial` are axial and
# {glue:text}`mix_tumour_t1` look T1-weighted. BRISC's file names mark every slice T1-weighted, and its
# no tumour slices come in all three views. The per-view tables above show where that costs: the
# no tumour recall by view. Four ablations of the standard variant, each trained with one change and
# scored on the same images (nothing chosen on them): {glue:text}`ext_ablations`.

# %%
view_figure = res / "data" / "figures" / "views.jpg"
if view_figure.is_file():  # rendered by the data step from the hand-labelled Training files
    display(Image(filename=str(view_figure)))

# %% [markdown]
# **Contrast inversion** (half of the augmented views inverted inside the head, `augment.invert`; over
# every seed): {glue:text}`ext_inversion`.

# %%
if rq.get("inversion"):
    display(tables.seeds_table(rq["inversion"]["seeds_table"]))

# %% [markdown]
# **Plane-balanced training weights** (`train.view_balance`; over every seed): {glue:text}`ext_views`.

# %%
if rq.get("views"):
    if rq["views"].get("estimate"):
        display(tables.plane_estimate_table(rq["views"]["estimate"]))
    display(tables.seeds_table(rq["views"]["seeds_table"]))

# %% [markdown]
# ## Can the weak-mask network veto the shortcut?
#
# The evidence gate turns a tumour prediction into "no tumour" when the weak-mask network's tumour
# probability inside the head stays below a threshold (its 99th percentile; threshold chosen on the
# Kaggle validation split): {glue:text}`ext_gate`.

# %%
if external and external.get("evidence_gate"):
    display(figures.gate_curve(external["evidence_gate"]))

# %% [markdown]
# ## Scans the model was not made for: the input guard
#
# Another release shows that a model meets scans unlike its training images; a user may also give it a
# blank image, a photograph or a scan with inverted contrast. `tumorlens predict` checks every image
# before its class is trusted (pixel checks; a bright background; pooled features of
# {glue:text}`guard_model` far from the training split's) and marks what it flags with a warning — the
# class is kept, the warning says not to trust it. Each measured check's threshold was set at
# {glue:text}`guard_target` false alarms on the Kaggle validation split. Measured: it flags
# {glue:text}`guard_false_alarms` (false alarms), and {glue:text}`guard_catch` (catch rates);
# {glue:text}`guard_inverted`. The guard tells a user when a scan lies outside what the model knows;
# it cannot tell whether a call on an ordinary-looking scan is right.

# %%
guard = pages.read_guard(profile)
if guard:
    display(
        tables.show(
            tables.guard_table(guard), caption="The input guard: false alarms and catch rates (benchmarks/results)"
        )
    )
else:
    print("The input guard has not been measured for this profile (python benchmarks/guard.py --write).")

# %%
if external:
    display(
        tables.provenance(
            {
                "external record": "external.json (tumorlens external)",
                "cross-release audit": "data/brisc_overlap.json" if overlap else "not run",
                "models": external["models"],
                "external set": ext_set["systems"][single]["dataset"] if ext_set else "none",
                "Kaggle reference": overlap["reference"] if overlap else "not run",
                "audit rule": overlap["params"] if overlap else "not run",
            }
        )
    )
