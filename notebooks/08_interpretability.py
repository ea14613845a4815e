# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Interpretability and weak segmentation (RQ3, RQ6)
#
# Where does the classifier's evidence lie, can it outline the tumour without ever being shown
# an outline (RQ3), and does its decision rest on the lesion at all (RQ6, the lesion-removal test at the
# end of this chapter)? Every map below is a pure function of the trained classifier, the image and a class:
#
# - **Grad-CAM** on the last convolutional layer (1/32 of the input side: 7x7 at 224 px, 8x8 at 240 px) —
#   the paper's method, first row;
# - **Grad-CAM++**, and **LayerCAM** (each location weighted by its own positive gradient), on that
#   layer, on finer layers (stride 16 and 8) and on the two fused, optionally averaged with the
#   mirrored image's map;
# - the **weak-mask network**: a small decoder on the classifier's own encoder, trained on CAM +
#   GrabCut pseudo-masks of the Kaggle *training* images (image labels only; no tumour images give
#   empty masks).
#
# Each map becomes a mask twice: binarised inside a head mask (*map only*) and used to seed GrabCut
# (*map + GrabCut*). Both are scored against expert masks with Dice and IoU; the pointing game asks
# whether the map's peak falls inside the tumour, against a map-free baseline that always points at
# the centre of the head. Thresholds are chosen per map on one half of the expert masks and every
# number below comes from the other half; nothing is trained on expert masks, and the mask this
# project adopts is set before the report half is looked at (the row best on the tuning half is
# named below). A "no tumour" prediction gives an empty mask by design.
#
# This chapter reads the explain step's published results (`results/<profile>/segmentation/`, written by
# `notebooks/03_explain.py` in run mode and `tumorlens collect`), the lesion-removal test's
# (`results/<profile>/lesion.json`, `tumorlens evaluate lesion`) and the lesion study's (`rq.json`); it
# computes nothing.

# %% tags=["parameters"]
profile = "smoke"
results = "results/smoke"

# %%
from pathlib import Path

from IPython.display import Image
from myst_nb import glue

from tumorlens.book import figures, pages, tables
from tumorlens.book.lesion import (
    lesion_glue,
    lesion_groups_tables,
    lesion_rates_tables,
    read_lesion,
    recipe_table,
    statistics_tables,
    study_glue,
    study_tables,
)
from tumorlens.book.text import EXPERT_SOURCE, SOURCE_NOTE, explain_glue, failure_words, localisation_words
from tumorlens.experiments.steps import STEPS
from tumorlens.records import read_rows
from tumorlens.utils.files import read_json

figures.setup_plotly()
res = Path(results)
run_dir = res / "segmentation"
summary = read_json(run_dir / "summary.json", schema="segmentation")
rows = read_rows(run_dir / "per_image.csv")
rq = read_json(res / "rq.json", schema="rq")
words = explain_glue(summary)
words |= {k: v for k, v in pages.results_glue(res, profile).items() if k.startswith("rq3_")}
words["seg_model_words"] = pages.run_words("/".join(Path(summary["model"]).parts[-2:]))
lesion_record = read_lesion(res)
single_name = (pages.read_published_models(profile) or {}).get("single") or "/".join(Path(summary["model"]).parts[-2:])
words |= lesion_glue(lesion_record, single_name) | study_glue(rq.get("lesion"))
failures = (rq.get("rq3") or {}).get("failures")
words["seg_failures"] = failure_words(failures)
for name, text in words.items():
    glue(name, text, display=False)

# %% [markdown]
# Model explained: {glue:text}`seg_model_words` ({glue:text}`seg_model_choice`). Ground truth:
# {glue:text}`seg_source`; thresholds tuned on {glue:text}`seg_n_tune` images, scores on the other
# {glue:text}`seg_n_report`.
#
# **Adopted mask: {glue:text}`adopted`.** Mean Dice {glue:text}`adopted_dice` (median
# {glue:text}`adopted_dice_median`), against {glue:text}`paper_dice` for the paper's Grad-CAM + GrabCut
# (paired difference {glue:text}`adopted_vs_paper`). Its map's peak lies inside the tumour for
# {glue:text}`adopted_pointing` of the images; always pointing at the centre of the head scores
# {glue:text}`centre_pointing` ({glue:text}`centre_pointing_near` within {glue:text}`pointing_tol` px),
# a paired difference of {glue:text}`adopted_pointing_vs_centre`. The paper's Grad-CAM points inside
# the tumour for {glue:text}`paper_pointing`. Predict + explain + mask take {glue:text}`adopted_ms` ms
# per image here (median, one image at a time). Best on the tuning half: {glue:text}`best_on_tuning`.

# %% [markdown]
# For the adopted map, GrabCut minus the binarised map is {glue:text}`rq3_grabcut_diff` in Dice:
# {glue:text}`rq3_verdict`.
#
# ## Over classifier seeds
#
# Does it hold for another seed of the same classifier? The explain step once more (pseudo-masks,
# self-training, thresholds on the tuning half) on the explained recipe's other seeds:
# {glue:text}`rq3_seeds`

# %%
if rq.get("rq3") and rq["rq3"].get("seeds"):
    display(tables.show(tables.explain_seeds_table(rq["rq3"]["seeds"]["rows"]), caption="The explain step per seed"))

# %% [markdown]
# ## Every map, with and without GrabCut
#
# Intervals are 95% bootstrap intervals over the report images; differences are paired (the same
# images resampled together).

# %%
methods = tables.methods_table(summary["methods"])
dice_cols = [c for c in methods.columns if "Dice" in c or "IoU" in c]
display(
    tables.show(methods[[c for c in dice_cols if c != "tuning-half Dice"]], caption="Overlap with the expert masks")
)
display(
    tables.show(
        methods[[c for c in methods.columns if c not in dice_cols or c == "tuning-half Dice"]],
        caption="Pointing game, the tuning half, and the cost",
    )
)

# %%
figures.method_dice(summary["methods"])

# %% [markdown]
# ## The adopted mask, per class

# %%
tables.segmentation_table(summary)

# %%
figures.dice_boxes(rows, title="Dice per image of the adopted map: map only vs map + GrabCut (predicted class)")

# %% [markdown]
# ## Separating segmentation from classification
#
# The same scores with the map of the **true** class (an oracle a deployed tool does not have):
# the difference to the table above is what misclassification costs the masks.

# %%
tables.segmentation_table(summary, prefix="oracle_")

# %% [markdown]
# ## Does a head that pools the strongest locations localise better?
#
# Global average pooling lets evidence spread over the whole slice count as much as a small lesion.
# The localisation ablation trains the standard variant again with heads whose pooling lets a few
# locations decide (log-sum-exp, and the mean of the top 10% of locations; same seed, same
# schedule) and scores each run's maps exactly as above, thresholds tuned on the same tuning half
# (a step of its own, `notebooks/03_localisation.py`).
# The first row of each map is the reference: the standard head, trained again beside the others (the
# headline run's recipe and seed, so the three heads come from one machine and one code); an adopted
# pooling must keep the classification scores. No table here means the profile does not plan this ablation
# (`reproduce.poolings`).

# %%
ablation_file = res / STEPS["03_localisation"].results / "localisation.json"  # the localisation step's product
ablation = read_json(ablation_file, schema="localisation") if ablation_file.is_file() else None
glue("localisation_words", localisation_words(ablation, summary["cam"]), display=False)
if ablation:
    display(tables.localisation_table(ablation["rows"]))

# %% [markdown]
# {glue:text}`localisation_words`

# %% [markdown]
# ## The weak-mask network
#
# Trained on {glue:text}`net_n_train` training images ({glue:text}`net_n_tumour` with a tumour label,
# of which {glue:text}`net_empty` got an empty pseudo-mask); pseudo-masks from
# {glue:text}`net_from` + GrabCut cover {glue:text}`net_area` of a tumour image on average.
# Decoder: {glue:text}`net_params` parameters, {glue:text}`net_epochs` epochs a round,
# {glue:text}`net_rounds`. The whole second stage (pseudo-masks, features, training) took
# {glue:text}`net_minutes` minutes on this machine.

# %%
if summary.get("network"):
    display(figures.loss_curve(summary["network"]["history"], title="Weak-mask network: training loss (pseudo-masks)"))

# %% [markdown]
# ## What a user gets: the adopted map and mask on public images
#
# Per tumour class, the first three (by file name) de-duplicated Kaggle Testing images, with the
# adopted map and weak mask — rendered by the explain step and published with the results, so they
# show without the dataset.

# %%
public = summary.get("public_galleries") or {}
for cls, name in (public.get("files") or {}).items():
    print(cls)
    display(Image(filename=str(Path(run_dir) / name)))
if public.get("files"):
    print(SOURCE_NOTE, "Maps and masks are this project's; no expert masks here.")

# %% [markdown]
# ## Galleries against the expert masks
#
# Per class, the best, median and worst report-half image of the adopted mask: the image, the map overlay,
# the binarised map, the GrabCut mask and the expert mask. They are rendered while the images and masks
# are at hand and published with the results as small composites (`tumorlens collect --only figures`), so
# a book built without the dataset shows them too. The thresholds of the adopted mask are listed below.

# %%
published_galleries = sorted(Path(run_dir).glob("gallery_expert_*.jpg"))
for f in published_galleries:  # rendered with the data at hand, published with the results
    print(f.stem.removeprefix("gallery_expert_"))
    display(Image(filename=str(f)))
if published_galleries:
    print(EXPERT_SOURCE)
else:
    print(
        "No expert-mask galleries in these results: `tumorlens collect --profile <profile> --only figures` renders "
        "them where the expert masks are (TUMORLENS_MASKS or segment.masks)."
    )
display(
    tables.provenance(
        {"map": summary["map"], "mask": summary["mask"], **summary["params"]},
        title="The adopted mask's settings (thresholds chosen on the tuning half)",
    )
)

# %% [markdown]
# ## Where the masks fail
#
# Each report-half image of the adopted mask falls in one category, decided in this order: called no tumour
# (an empty mask by design); *good* (Dice ≥ 0.5); *found, outline off* (the map's peak lies on the lesion,
# within the pointing tolerance, but the mask's extent is wrong: too large, too small or spilling over); or
# *missed* (the peak lies off the lesion, so the mask outlines something else). The rule is fixed, nothing
# is tuned on it. In these results: {glue:text}`seg_failures`.

# %%
if failures:
    display(tables.failure_table(failures))
gallery = run_dir / "gallery_failures.jpg"
if gallery.is_file():  # rendered with the data at hand, published with the results
    display(Image(filename=str(gallery)))
    print(
        "Per tumour class, the worst missed and the worst outlined-wrongly images, redrawn with the published "
        "single model as predict --segment draws them. " + EXPERT_SOURCE
    )
else:
    print(
        "No failure gallery in these results: `tumorlens collect --profile <profile> --only figures` renders it "
        "where the expert masks and the published models are."
    )

# %% [markdown]
# ## Does the decision rest on the lesion? The lesion-removal test
#
# A map that lights up the tumour does not show that the call needs it: in this dataset the classes
# also differ in how their slices were acquired (view, sequence; see the external-validation chapter).
# The lesion-removal test asks the classifier directly. Each of the {glue:text}`les_n` scans of the
# {glue:text}`les_set` (read at {glue:text}`les_size` px, the published single model's input) has its
# expert-marked lesion, grown by {glue:text}`les_dilation` of the side, filled from its surroundings in each of
# these ways: {glue:text}`les_fills`. If the call rested on the lesion, a scan without it should be called
# "no tumour". As a control, a region of the same shape placed elsewhere in the head (where one fits:
# {glue:text}`les_n_control` scans) is removed the same way: a fill that itself pushed scans to
# "no tumour" would show there. Rates are shares of scans with Wilson 95% intervals; the expert masks
# are used only to measure, never to train, tune or choose.
#
# **The published model** ({glue:text}`les_model`): {glue:text}`les_summary`. So
# {glue:text}`les_meaning`. What other evidence carries the call (the tissue around the lesion, mass
# effect, or the way tumour slices were acquired) this test cannot tell; the study below tries to teach a
# model to rely on the lesion.

# %%
if lesion_record:
    examples = res / "lesion_examples.jpg"
    if examples.is_file():  # rendered by `tumorlens evaluate lesion` while the images were at hand
        display(Image(filename=str(examples)))
        print(
            f"One scan per tumour class: the original, the lesion removed and the control removed "
            f"({lesion_record['methods'][0]}), each titled with the published single model's call; green outlines "
            "the removed lesion, yellow the control region. Images and expert masks: BRISC 2025 (Fateh et al., "
            "2025), test split; the figure is rendered by `tumorlens evaluate lesion` and published with the "
            "results (the raw files are not part of the repository)."
        )
    for caption, frame in lesion_rates_tables(lesion_record, single_name):
        display(tables.show(frame, caption=f"The published models. {caption}"))
else:
    print("Not yet measured for these results: no lesion.json (run `tumorlens evaluate lesion --profile <profile>`).")

# %% [markdown]
# ### Per class and per view
#
# The published single model's rates by tumour class and by view (from BRISC's file names), beside the
# share of the original scans it classifies correctly.

# %%
single_scores = (lesion_record or {}).get("models", {}).get(f"published: {single_name}")
if single_scores:
    for caption, frame in lesion_groups_tables(single_scores):
        display(tables.show(frame, caption=f"Single model, per class and view. {caption}"))

# %% [markdown]
# ### The same test on the Kaggle validation split
#
# A recipe that should rely on the lesion must be chosen without the expert masks. The same test runs
# on the {glue:text}`les_val_n` tumour images of the Kaggle **validation** split whose published weak mask
# is trusted ({glue:text}`les_val_masks`; grown by {glue:text}`les_val_dilation`): there a choice may be
# made. {glue:text}`les_val_summary`.

# %%
if lesion_record and (lesion_record.get("validation") or {}).get("models"):
    for caption, frame in lesion_rates_tables(lesion_record, single_name, "validation"):
        display(tables.show(frame, caption=f"Kaggle validation, published weak masks. {caption}"))

# %% [markdown]
# ### The lesion study: can training make the call rest on the lesion?
#
# The published single model's recipe retrained (same backbone, seed and schedule) with one change per
# recipe: lesion-removed training images labelled no tumour (the published weak masks of the training
# split) with same-shaped controls that keep their class, contrast randomisation (GIN), both, or lesion
# transplants into no tumour slices. The choice between them is made on the validation split only:
# {glue:text}`les_study_rule`. Result: {glue:text}`les_study_choice`. {glue:text}`les_study_summary`.

# %%
study = rq.get("lesion")
if study and study.get("rows"):
    for caption, frame in study_tables(study):
        display(tables.show(frame, caption=caption))
    display(
        tables.show(recipe_table([r["tag"] for r in study["rows"][1:]]), caption="What each recipe changes (settings)")
    )
else:
    print("The lesion study is not yet collected for these results (rq.json has no lesion block).")

# %% [markdown]
# ### Over seeds
#
# One seed says little about a recipe: a recipe named in `reproduce.counterfactual_seeds` is trained at
# every seed of the profile, beside today's recipe at the same seeds (retrained where the published copies
# hold no weights), and compared on the same images: the mean ± sd of each measure over the seeds, and per
# seed the paired difference with its bootstrap interval. No table here means no recipe is trained at
# every seed for these results.

# %%
for tag, stats in ((study or {}).get("statistics") or {}).items():
    for caption, frame in statistics_tables(stats):
        display(tables.show(frame, caption=caption))
if lesion_record:
    display(
        tables.provenance(
            {
                "record": "lesion.json (tumorlens evaluate lesion)",
                "expert-mask set": f"{lesion_record['set']['name']} ({lesion_record['set']['n']} images)",
                "input size": lesion_record["set"].get("image_size"),
                "dilation": lesion_record["dilation"],
                "fills": lesion_record["methods"],
                "control placement seed": lesion_record.get("seed"),
                "models": list(lesion_record["models"]),
                "validation test": {
                    k: v
                    for k, v in (lesion_record.get("validation") or {}).items()
                    if k not in ("ids", "models", "masks")
                },
                "study": "rq.json[lesion]" if study else "not yet collected",
            },
            title="Lesion-removal test: provenance",
        )
    )
