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
# # Explain and segment: from Grad-CAM to weak tumour masks
#
# Where does the classifier's evidence lie, and can it outline the tumour without ever being shown
# an outline? Every map below is a pure function of the trained classifier, the image and a class:
#
# - **Grad-CAM** on the last convolutional layer (7x7 at 224 px) — the paper's method, first row;
# - **Grad-CAM++**, and **LayerCAM** (each location weighted by its own positive gradient), on that
#   layer, on finer layers (stride 16 and 8) and on the two fused, optionally averaged with the
#   mirrored image's map;
# - the **weak-mask network**: a small decoder on the classifier's own encoder, trained on CAM +
#   GrabCut pseudo-masks of the Kaggle *training* images (image labels only; no-tumour images give
#   empty masks).
#
# Each map becomes a mask twice: binarised inside a head mask (*map only*) and used to seed GrabCut
# (*map + GrabCut*). Both are scored against expert masks with Dice and IoU; the pointing game asks
# whether the map's peak falls inside the tumour, against a map-free baseline that always points at
# the centre of the head. Thresholds are chosen per map on one half of the expert masks and every
# number below comes from the other half; nothing is trained on expert masks, and the mask this
# project adopts is set before the report half is looked at (the row best on the tuning half is
# named below). A "no tumour" prediction gives an empty mask by design.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: explain and score now | report: read a saved result (results/<profile>/segmentation)
model_run = "runs/smoke/efficientnet_lite0+mab+respath+sbr/seed-42"  # the trained run explained (run mode)
candidate_runs = []  # if given: explain the one with the best validation macro-F1 (the single best model)
run_dir = "runs/smoke/explain"
overrides = {}

# %%
import json
from pathlib import Path

from IPython.display import Image
from myst_nb import glue

from tumorlens.book import figures, tables
from tumorlens.book.text import explain_glue
from tumorlens.config import load_config
from tumorlens.explain import gallery
from tumorlens.explain.gallery import draw_galleries
from tumorlens.explain.ground_truth import mask_items_for
from tumorlens.explain.run import explain_run
from tumorlens.explain.weak_masks import SegmentParams
from tumorlens.records import read_rows
from tumorlens.utils.files import read_json

figures.setup_plotly()
cfg = load_config(profile, overrides=overrides)
if mode == "run":
    explain_run(cfg, model_run, run_dir, candidate_runs=candidate_runs)
summary = read_json(Path(run_dir) / "summary.json", schema="segmentation")
rows = read_rows(Path(run_dir) / "per_image.csv")
for name, text in explain_glue(summary, model_run).items():
    glue(name, text, display=False)

# %% [markdown]
# Model explained: {glue:text}`seg_model` ({glue:text}`seg_model_choice`). Ground truth:
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
# ## Every map, with and without GrabCut
#
# Intervals are 95% bootstrap intervals over the report images; differences are paired (the same
# images resampled together).

# %%
tables.methods_table(summary["methods"])

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
# show without the dataset. No expert masks here (see the source note printed below).

# %%
public = summary.get("public_galleries") or {}
print(public.get("source", ""))
for cls, name in (public.get("files") or {}).items():
    print(cls)
    display(Image(filename=str(Path(run_dir) / name)))

# %% [markdown]
# ## Galleries against the expert masks
#
# Per class, the best, median and worst image of the adopted mask: the image, the map overlay, the
# binarised map, the GrabCut mask and the expert mask. They are drawn when the book is built, from
# the saved low-resolution maps and the images themselves (which are not part of this repository),
# so a book built without the dataset shows none.

# %%
print("thresholds chosen on the tuning part:", json.dumps(summary["params"]))
_, items = mask_items_for(cfg)
galleries = (
    draw_galleries(
        Path(run_dir) / "gallery.npz",
        {it.id: it for it in items},
        cfg.data.image_size,
        SegmentParams(**summary["params"]),
    )
    if items
    else {}
)
if not galleries:
    print("The images and masks are not available on this machine: no galleries.")
for cls, png in galleries.items():
    print(cls)
    display(Image(data=gallery.png_bytes(png)))
