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
# # Explain and segment: Grad-CAM refined by GrabCut
#
# For each scan with a ground-truth tumour mask, the trained classifier's Grad-CAM map for its
# predicted class is (a) binarised — the *CAM-only* mask — and (b) used to seed GrabCut inside a
# cheap head mask — the *CAM + GrabCut* mask. Both are scored against the ground truth with Dice
# and IoU; the pointing game asks whether the map's peak falls inside the tumour (strictly, and
# within `segment.pointing_tolerance` pixels), against a map-free baseline that always points at
# the centre of the head.
# Thresholds are chosen on one half of the masks and every number below comes from the other half;
# nothing is trained on masks. A "no tumour" prediction gives an empty mask by design.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: explain and score now | report: read a saved result (results/<profile>/segmentation)
model_run = "runs/smoke/efficientnet_lite0+mab+respath+sbr/seed-42"  # the trained run explained (run mode)
run_dir = "runs/smoke/explain"
overrides = {}

# %%
import csv
import json
from pathlib import Path

from IPython.display import Image
from myst_nb import glue

from tumorlens.book import figures, tables
from tumorlens.config import load_config
from tumorlens.explain import gallery
from tumorlens.explain.gallery import draw_galleries
from tumorlens.explain.ground_truth import mask_items_for
from tumorlens.explain.scoring import evaluate_segmentation
from tumorlens.explain.weak_masks import SegmentParams

figures.setup_plotly()
cfg = load_config(profile, overrides=overrides)
if mode == "run":
    trained = json.loads((Path(model_run) / "config.json").read_text())["config"]
    cfg = cfg.override({"model.backbone": trained["model"]["backbone"], "model.modules": trained["model"]["modules"]})
    evaluate_segmentation(cfg, model_run, out_dir=run_dir)
summary = json.loads((Path(run_dir) / "summary.json").read_text())
rows = list(csv.DictReader(open(Path(run_dir) / "per_image.csv")))
overall = summary["per_class"]["all"]
glue("seg_source", summary["source"], display=False)
glue("seg_n_report", summary["n_report"], display=False)
glue("seg_n_tune", summary["n_tune"], display=False)
glue("dice_cam_mean", f"{overall['dice_cam']['mean']:.3f}", display=False)
glue("dice_gc_mean", f"{overall['dice_grabcut']['mean']:.3f}", display=False)
glue("dice_cam_median", f"{overall['dice_cam']['median']:.3f}", display=False)
glue("dice_gc_median", f"{overall['dice_grabcut']['median']:.3f}", display=False)
glue("seg_model", summary.get("model", model_run), display=False)
glue("pointing", f"{overall['pointing']:.0%}", display=False)
glue("pointing_near", f"{overall['pointing_near']:.0%}", display=False)
glue("pointing_tol", summary["pointing_tolerance_px"], display=False)
glue("centre_pointing", f"{overall['centre_pointing']:.0%}", display=False)
glue("centre_pointing_near", f"{overall['centre_pointing_near']:.0%}", display=False)

# %% [markdown]
# Model explained: {glue:text}`seg_model`. Ground truth: {glue:text}`seg_source`; thresholds
# tuned on {glue:text}`seg_n_tune` images, scores on the other {glue:text}`seg_n_report`. Over all
# classes, mean Dice is {glue:text}`dice_cam_mean` for the CAM-only mask and {glue:text}`dice_gc_mean`
# with GrabCut (medians {glue:text}`dice_cam_median` and {glue:text}`dice_gc_median`). The map's
# peak lies inside the tumour for {glue:text}`pointing` of the images ({glue:text}`pointing_near`
# within {glue:text}`pointing_tol` px); always pointing at the centre of the head scores
# {glue:text}`centre_pointing` ({glue:text}`centre_pointing_near`) — a map that does no better than
# that baseline localises nothing beyond "the middle of the brain".

# %%
tables.segmentation_table(summary)

# %%
figures.dice_boxes(rows, title="Dice per image: CAM only vs CAM + GrabCut (predicted class)")

# %% [markdown]
# ## Separating segmentation from classification
#
# The same scores with the map of the **true** class (an oracle a deployed tool does not have):
# the difference to the table above is what misclassification costs the masks.

# %%
tables.segmentation_table(summary, prefix="oracle_")

# %% [markdown]
# ## Galleries
#
# Per class, the best, median and worst image by CAM + GrabCut Dice: the image, the Grad-CAM
# overlay, the binarised CAM, the GrabCut mask and the ground truth. They are drawn when the book is
# built, from the saved low-resolution maps and the images themselves (which are not part of this
# repository), so a book built without the dataset shows none.

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
