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
# This chapter scans the images the profile names, reports every file that cannot be used, shows
# the class balance and a few examples, previews the paper's augmentation and measures how much of
# the test split is a copy of the training split.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper
mode = "run"  # run: scan and audit now | report: read a saved run (e.g. results/cpu/data)
run_dir = "runs/smoke/data"
data_root = ""  # a dataset folder; "" uses the profile's (or $TUMORLENS_DATA)
seed = 42

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image
from myst_nb import glue

from tumorlens.book import figures, snapshots, tables
from tumorlens.book.text import view_mix_glue
from tumorlens.config import CLASSES, load_config
from tumorlens.data import prepare
from tumorlens.data.annotations import read_view_labels, view_sequence_mix
from tumorlens.data.pipeline import augment_views
from tumorlens.data.prepared import read_data_step, write_data_step
from tumorlens.errors import DatasetNotFoundError

figures.setup_plotly()
cfg = load_config(profile, overrides={"seed": seed} | ({"data.root": data_root} if data_root else {}))
out = Path(run_dir)
prep = None
view_labels = read_view_labels()  # hand labels of a Training sample (data/annotations/)
if mode == "run":
    prep = prepare(cfg)
    write_data_step(prep, cfg.data.split, out)
    snapshots.write_data_figures(prep, cfg, prep.audit.to_dict(), out / "figures", seed)
    snapshots.write_view_figure(prep.root, view_labels, out / "figures" / "views.jpg")
step = read_data_step(out)  # a missing, stale or partial file fails here, naming itself
scan_d, audit_d, splits_d, n_dedup = step["scan"], step["audit"], step["splits"], len(step["dedup_test"])
source = (
    "synthetic phantoms (the embedded default)"
    if cfg.data.source == "phantoms"
    else "the Kaggle Brain Tumor MRI dataset"
)
glue("data_source", source, display=False)
glue("n_images", scan_d["n_images"], display=False)
glue("n_bad", scan_d["n_bad"], display=False)
glue(
    "n_single_channel", scan_d["channels"].get("single-channel", 0), display=False
)  # a current scan omits kinds it never saw
glue("dataset_name", scan_d["dataset"]["name"], display=False)
glue("dataset_fingerprint", scan_d["dataset"]["fingerprint"], display=False)

# %% [markdown]
# ## What was found
#
# The profile reads {glue:text}`data_source`: {glue:text}`n_images` usable images, of which
# {glue:text}`n_single_channel` are single-channel (grayscale; repeated to three channels).
# {glue:text}`n_bad` files could not be used; each would be listed below with its reason. The
# results name the dataset by its folder, **{glue:text}`dataset_name`**, and a fingerprint of its
# file list, {glue:text}`dataset_fingerprint`, never by where it lay on the machine that ran it:
# a rerun on another copy of the same dataset gives the same fingerprint.

# %%
tables.scan_table(scan_d)

# %%
print("\n".join(f"bad: {b['path']}: {b['reason']}" for b in scan_d["bad"]) or "no bad files")
print("\n".join(f"warning: {w}" for w in scan_d["warnings"]) or "no warnings")

# %%
figures.class_balance({k: v for k, v in scan_d["counts"].items()}, title="Images per class in the source folders")

# %% [markdown]
# ## Splits
#
# The split is seeded (by `data.seed`, the same for every model seed) and stratified by class;
# validation and test images are never augmented.

# %%
counts = splits_d["counts"]
glue("split_kind", splits_d["kind"], display=False)
for name in ("train", "val", "test"):
    glue(f"n_{name}", counts[name]["total"], display=False)
figures.class_balance(counts, title=f"The {splits_d['kind']} split: train / val / test")

# %% [markdown]
# The **{glue:text}`split_kind`** split gives {glue:text}`n_train` training, {glue:text}`n_val`
# validation and {glue:text}`n_test` test images.
#
# ## Examples and augmentation
#
# Each image is resized to a square **keeping its aspect ratio** (the short side is padded with
# black, never stretched). Augmentation, training only: rotation ±0.05 rad, zoom 0.1, translation
# 0.05 and contrast ±0.1, as Keras preprocessing layers. The figures are rendered by the data step
# and published with the results (the Kaggle dataset is public domain, CC0), so a book built without
# the dataset shows them too; the duplicate pairs illustrate the leakage audit below.

# %%
published = [(out / "figures" / name, caption) for name, caption in snapshots.DATA_FIGURES.items()]
published = [(f, caption) for f, caption in published if f.is_file()]
for f, caption in published:  # rendered by the data step, published with the results
    print(caption)
    display(Image(filename=str(f)))
if published:
    print(snapshots.SOURCE_NOTE)
else:
    try:
        prep = prep or prepare(cfg, show_progress=False)
    except DatasetNotFoundError:
        print(
            "The dataset is not available where this book was built, and these results carry no rendered "
            "figures (point TUMORLENS_DATA at the Kaggle dataset, or set data.root; see data/README.md)."
        )
if not published and prep is not None:
    train_images = prep.images("train")
    labels = prep.labels("train")
    picks = [i for c in range(len(CLASSES)) for i in list((labels == c).nonzero()[0][:4])]
    display(
        figures.image_grid(
            train_images[picks],
            [figures.PRETTY[CLASSES[labels[i]]] for i in picks],
            cols=4,
            title="Four training images per class",
        )
    )
    a = cfg.augment
    views = augment_views(
        train_images[picks[0]],
        8,
        rotation=a.rotation,
        zoom=a.zoom,
        translation=a.translation,
        contrast=a.contrast,
        seed=seed,
    )
    display(
        figures.image_grid(
            views, [f"view {i + 1}" for i in range(8)], cols=4, title="Eight augmented views of one image"
        )
    )

# %% [markdown]
# ## Leakage audit
#
# Two images are *exact* duplicates when their bytes are identical, and *near* duplicates when
# their perceptual hashes are close **and** their thumbnails correlate strongly (re-contrasted,
# re-cropped copies and adjacent slices of one patient). The table counts, per class, the Testing
# images with a copy in Training; the **de-duplicated test subset** keeps only test images with no
# copy among the training and validation images. Every later evaluation reports both.

# %%
total = audit_d["testing_vs_training"]["total"]
glue("n_testing_with_copy", total["any_in_training"], display=False)
glue("n_testing", total["testing"], display=False)
glue("n_exact", total["exact_in_training"], display=False)
glue("share_testing_with_copy", f"{total['any_in_training'] / max(1, total['testing']):.0%}", display=False)
glue("n_dedup", n_dedup, display=False)
tables.audit_table(audit_d)

# %% [markdown]
# Of the {glue:text}`n_testing` Testing images, {glue:text}`n_testing_with_copy`
# ({glue:text}`share_testing_with_copy`) have an exact or near copy in Training —
# {glue:text}`n_exact` of them byte-identical. The de-duplicated test subset of this split holds
# {glue:text}`n_dedup` images. How the count depends on the matching rule:

# %%
pd.DataFrame(audit_d["sensitivity"]).set_index("rule")

# %% [markdown]
# ## Views and sequences: a shortcut the audit cannot see
#
# The audit finds copies; it cannot see *how* each class was imaged. One rater labelled the view and
# the apparent sequence of a random sample of Training images by eye, 24 per class
# (`data/annotations/`; file names and labels only). The shares, with Wilson 95% intervals:

# %%
mix = view_sequence_mix(view_labels)
for name, text in view_mix_glue(mix).items():
    glue(name, text, display=False)
tables.view_mix_table(mix)

# %%
figures.view_mix_bars(mix, "view")

# %%
figures.view_mix_bars(mix, "sequence")

# %% [markdown]
# Of the labelled no-tumour slices, {glue:text}`mix_nt_axial` are axial and {glue:text}`mix_nt_t1`
# look T1-weighted; of the labelled tumour slices, {glue:text}`mix_tumour_axial` are axial and
# {glue:text}`mix_tumour_t1` look T1-weighted. So "not axial, or T1-weighted, means a tumour" separates
# the classes well on this dataset without looking at any lesion — a shortcut a classifier can take,
# which the official and de-duplicated test splits (drawn from the same collection) reward. An
# external release whose file names mark every slice T1-weighted, its no-tumour slices in all three
# views (BRISC 2025, the external check on the results page), does not; the localisation and
# intensity ablations are the levers this repository measures against it. One rater and 24 images
# per class: the intervals are wide, the pattern is not.

# %%
view_figure = out / "figures" / "views.jpg"
if view_figure.is_file():  # rendered by the data step from the labelled files, published with the results
    print("Labelled Training images: per class, up to four view and sequence pairs.", snapshots.SOURCE_NOTE)
    display(Image(filename=str(view_figure)))
else:
    print("The labelled Training images are not part of these results (the profile's data is not the Kaggle set).")
