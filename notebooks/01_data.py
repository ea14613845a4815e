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
# # Data: the dataset, its splits, augmentation and a leakage audit
#
# This chapter loads the images the selected profile names, reports every file that cannot be used,
# shows the class balance and a few examples, previews the paper's augmentation and measures how
# much of the test split is a copy of the training split.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper
data_root = ""     # a dataset folder; "" uses the profile's (or $TUMORLENS_DATA)
run_dir = "runs/smoke/data"
seed = 42

# %%
import json
from pathlib import Path

from myst_nb import glue

from tumorlens import report
from tumorlens.config import CLASSES, load_config
from tumorlens.data import augment_views, prepare, split_counts

report.setup_plotly()
overrides = {"seed": seed} | ({"data.root": data_root} if data_root else {})
cfg = load_config(profile, overrides=overrides)
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
prep = prepare(cfg)
scan_d = prep.report.to_dict()
audit_d = prep.audit.to_dict()
(out / "scan.json").write_text(json.dumps(scan_d, indent=2))
(out / "audit.json").write_text(json.dumps(audit_d, indent=2))
(out / "dedup_test.csv").write_text("path\n" + "".join(p + "\n" for p in prep.dedup_test))
source = "synthetic phantoms (the embedded default)" if cfg.data.source == "phantoms" else f"`{prep.root.name}`"
glue("data_source", source, display=False)
glue("n_images", scan_d["n_images"], display=False)
glue("n_bad", scan_d["n_bad"], display=False)
glue("n_single_channel", scan_d["channels"].get("single-channel", 0), display=False)

# %% [markdown]
# ## What was found
#
# The profile reads {glue:text}`data_source`: {glue:text}`n_images` usable images, of which
# {glue:text}`n_single_channel` are single-channel (grayscale; repeated to three channels).
# {glue:text}`n_bad` files could not be used; each is listed below with its reason.

# %%
report.scan_table(scan_d)

# %%
print(prep.report.summary())

# %%
report.class_balance(prep.report.counts(), title="Images per class in the source folders")

# %% [markdown]
# ## Splits
#
# The split is seeded and stratified by class; validation and test images are never augmented.

# %%
counts = split_counts(prep.splits)
glue("split_kind", cfg.data.split, display=False)
for name in ("train", "val", "test"):
    glue(f"n_{name}", counts[name]["total"], display=False)
report.class_balance({k: v for k, v in counts.items()}, title=f"The {cfg.data.split} split: train / val / test")

# %% [markdown]
# The **{glue:text}`split_kind`** split gives {glue:text}`n_train` training, {glue:text}`n_val`
# validation and {glue:text}`n_test` test images.
#
# ## Examples
#
# Each image is resized to a square **keeping its aspect ratio** (the short side is padded with
# black, never stretched).

# %%
train_images = prep.images("train")
labels = prep.labels("train")
picks = [i for c in range(len(CLASSES)) for i in list((labels == c).nonzero()[0][:4])]
report.image_grid(train_images[picks], [report.PRETTY[CLASSES[labels[i]]] for i in picks], cols=4,
                  title="Four training images per class")

# %% [markdown]
# ## Augmentation (training only)
#
# Rotation ±0.05 rad, zoom 0.1, translation 0.05 and contrast ±0.1, as Keras preprocessing layers.

# %%
a = cfg.augment
views = augment_views(train_images[picks[0]], 8, rotation=a.rotation, zoom=a.zoom, translation=a.translation,
                      contrast=a.contrast, seed=seed)
report.image_grid(views, [f"view {i + 1}" for i in range(8)], cols=4, title="Eight augmented views of one image")

# %% [markdown]
# ## Leakage audit
#
# Two images are *exact* duplicates when their bytes are identical, and *near* duplicates when
# their perceptual hashes are close **and** their thumbnails correlate strongly (re-contrasted,
# re-cropped copies and adjacent slices of one patient). The table counts, per class, the test
# images with a copy in the training split; the **de-duplicated test subset** keeps only test images
# with no copy among the training and validation images. Every later evaluation reports both.

# %%
total = audit_d["testing_vs_training"]["total"]
glue("n_testing_with_copy", total["any_in_training"], display=False)
glue("n_testing", total["testing"], display=False)
glue("share_testing_with_copy", f"{total['any_in_training'] / max(1, total['testing']):.0%}", display=False)
glue("n_dedup", len(prep.dedup_test), display=False)
report.audit_table(audit_d)

# %% [markdown]
# Of the {glue:text}`n_testing` Testing images, {glue:text}`n_testing_with_copy`
# ({glue:text}`share_testing_with_copy`) have an exact or near copy in Training; the de-duplicated
# test subset of this run's split holds {glue:text}`n_dedup` images. How the count depends on the
# matching rule:

# %%
import pandas as pd

pd.DataFrame(audit_d["sensitivity"]).set_index("rule")
