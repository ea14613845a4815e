# ---
# jupyter:
#   accelerator: GPU
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator
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
# # tumorlens on Colab: the paper profile on a GPU, then Grad-CAM + GrabCut on a few scans
#
# This walkthrough clones and installs the repository, downloads the Kaggle "Brain Tumor MRI Dataset"
# with kagglehub, classifies, explains and outlines a few test scans with the **published model**
# (`models/cpu/models.json`: EfficientNet-Lite1, seed 43, `efficientnet_lite1/seed-43`; no training),
# then trains one backbone with the three modules on the **paper** profile (Keras ImageNet weights, the
# full schedule) and does the same with it.
#
# *Runtime → Change runtime type → GPU* first. Research software, not a diagnostic device.
#
# Run the cells top to bottom in one kernel: the install is a regular `pip install` (not editable), so
# `import tumorlens` works right after it without restarting the runtime. The parameters below are all it
# takes to run it elsewhere: `PROFILE = "smoke"` runs the same cells in a minute on synthetic phantoms (no
# download; the project's tests execute it so, cloning and installing from a local copy of the
# repository), `REPO` may name your fork or a local checkout (then nothing is cloned or installed),
# `DATA_ROOT` a copy of the dataset.

# %% tags=["parameters"]
PROFILE = "paper"  # paper (GPU, ImageNet weights, full schedule) | cpu | smoke (phantoms, a minute)
REPO = "https://github.com/tumorlens/tumorlens"  # your fork's URL, or a local checkout (not cloned again)
DATA_ROOT = ""  # "" downloads the Kaggle dataset with kagglehub (smoke: the phantoms); or a folder
BACKBONE = "mobilenetv2"  # mobilenetv2 | efficientnetb0 | vgg16 | efficientnet_lite0
MODULES = ["mab", "respath", "sbr"]
OUT = "runs/colab"  # the trained model and the predictions go here
N_SCANS = 4  # test scans to explain and outline

# %%
import importlib
import os
import subprocess
import sys

if os.path.isfile(os.path.join(REPO, "_config.yml")) and os.path.isdir(os.path.join(REPO, "lib", "tumorlens")):
    os.chdir(REPO)  # a local checkout, already installed (e.g. `make install`)
else:
    if not os.path.isdir("tumorlens"):
        subprocess.run(["git", "clone", "--depth", "1", REPO, "tumorlens"], check=True)
    os.chdir("tumorlens")
    # Not `pip install -e`: an editable install only takes effect in a kernel started after it (its path
    # hook is read when Python starts). A regular install puts the package in site-packages, which this
    # kernel already searches, so the import below works in the same kernel.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", ".[kaggle]"], check=True)
    importlib.invalidate_caches()
import tumorlens  # noqa: E402

print(f"tumorlens {tumorlens.__version__} from {os.path.dirname(tumorlens.__file__)}")
TUMORLENS = [sys.executable, "-m", "tumorlens.cli"]  # the `tumorlens` command of this kernel's Python

# %% [markdown]
# ## The GPU
#
# TensorFlow uses the GPU by itself when the runtime has one; the training and prediction below run in
# processes that see the same devices.

# %%
import tensorflow as tf

GPUS = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}; GPU: {', '.join(g.name for g in GPUS) or 'none'}")
if GPUS:
    subprocess.run(["nvidia-smi", "-L"], check=False)
elif PROFILE == "paper":
    print("warning: no GPU in this runtime; the paper profile will take hours (Runtime → Change runtime type → GPU)")

# %% [markdown]
# ## The data
#
# kagglehub downloads public datasets; if it asks for credentials, add `KAGGLE_USERNAME` and
# `KAGGLE_KEY` as Colab secrets (the key icon on the left) or upload `kaggle.json`.

# %%
from tumorlens.config import load_config
from tumorlens.data import prepare
from tumorlens.data.fetch import fetch_kaggle

if DATA_ROOT:
    root = DATA_ROOT
elif load_config(PROFILE).data.source == "phantoms":
    root = str(prepare(load_config(PROFILE), show_progress=False).root)  # generated on the fly
else:
    try:
        root = str(fetch_kaggle())
    except Exception as exc:  # no network or no Kaggle credentials: say what to do
        raise SystemExit(f"kagglehub could not download the dataset ({exc}); set DATA_ROOT to a copy") from None
os.environ["TUMORLENS_DATA"] = root
subprocess.run([*TUMORLENS, "data", "scan", root], check=True)
subprocess.run([*TUMORLENS, "data", "audit", root, "--out", f"{OUT}/audit"], check=True)

# %% [markdown]
# ## First: the published model, no training
#
# The repository ships the cpu run's best single model by validation (`models/cpu/models.json`, key
# `single`: `efficientnet_lite1/seed-43`, EfficientNet-Lite1 at 240 px), its ensemble's members and the
# weak-mask network, each checked against its sha256. `tumorlens predict` without `--model` uses it;
# `--ensemble published` soft-votes the published ensemble.

# %%
import json

published_models = json.load(open("models/cpu/models.json"))
print("published single model:", published_models["single"], "| ensemble:", " + ".join(published_models["ensemble"]))

# %%
import glob

from IPython.display import Image, display

scans = sorted(glob.glob(f"{root}/Testing/*/*.*"))
scans = scans[:: max(1, len(scans) // N_SCANS)][:N_SCANS]
published = f"{OUT}/published"
subprocess.run([*TUMORLENS, "predict", *scans, "--segment", "--out", published, "--overwrite"], check=True)
for s in scans:
    stem = os.path.splitext(os.path.basename(s))[0]
    print(s, json.load(open(f"{published}/{stem}.json"))["class"])
    display(Image(filename=f"{published}/{stem}_mask.png"))  # the published weak-mask network's outline

# %% [markdown]
# ## Train one backbone with the three modules

# %%
model_dir = f"{OUT}/model"
subprocess.run(
    [*TUMORLENS, "train", "--profile", PROFILE, "--backbone", BACKBONE, "--modules", *MODULES, "--out", model_dir],
    check=True,
)

# %%
print(json.dumps(json.load(open(f"{model_dir}/metrics.json"))["official"], indent=1)[:1500])

# %% [markdown]
# ## Explanations and weak masks on a few test scans
#
# `predict --segment` draws the configured map (`segment.cam`, `segment.cam_layers` in
# `_config.yml`: LayerCAM on the fused stride-16 and stride-8 layers) and outlines a weak mask. The
# thresholds tuned on expert masks, and the weak-mask network, come from the explain step
# (`notebooks/03_explain.py`, which needs the BRISC 2025 masks); this walkthrough has not run it, so
# predict uses the untuned defaults and says so on its first line.

# %%
predictions = f"{OUT}/predictions"
subprocess.run([*TUMORLENS, "predict", *scans, "--model", model_dir, "--segment", "--out", predictions], check=True)
for s in scans:
    stem = os.path.splitext(os.path.basename(s))[0]
    print(s, json.load(open(f"{predictions}/{stem}.json"))["class"])
    display(Image(filename=f"{predictions}/{stem}_cam.png"))  # the class activation map over the scan
    display(Image(filename=f"{predictions}/{stem}_mask.png"))  # the weak mask (white: tumour)
