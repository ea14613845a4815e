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
# # Robustness and calibration
#
# How much accuracy is lost when the test images are corrupted — Gaussian noise, blur,
# brightness and contrast changes, JPEG re-encoding, small rotations — at three severities; and how
# well the predicted probabilities are calibrated, before and after temperature scaling fitted on
# the validation split.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: corrupt and evaluate now | report: read a saved result (results/<profile>/robustness)
model_run = "runs/smoke/efficientnet_lite0+mab+respath+sbr/seed-42"  # its test predictions feed the diagram
run_dir = "runs/smoke/robustness"
bench = ""  # a `tumorlens bench` result (JSON) to show, if any

# %%
from pathlib import Path

import pandas as pd
from myst_nb import glue

from tumorlens.book import figures, pages, tables
from tumorlens.config import load_config
from tumorlens.evaluation.robustness import apply_temperature, evaluate_robustness
from tumorlens.records import read_predictions
from tumorlens.utils.files import read_json

figures.setup_plotly()
cfg = load_config(profile)
if mode == "run":
    evaluate_robustness(cfg, model_run, run_dir)
rob = read_json(Path(run_dir) / "robustness.json", schema="robustness")
data_words = "synthetic phantoms" if cfg.data.source == "phantoms" else "Kaggle Brain Tumor MRI"
for name, text in pages.robustness_glue(rob, f"{profile} ({data_words}, {cfg.data.image_size} px)").items():
    glue(name, text, display=False)
cal = rob["calibration"]

# %% [markdown]
# Profile {glue:text}`rob_profile`; model: {glue:text}`rob_run`. The largest accuracy loss on the
# official test split comes from {glue:text}`rob_worst` ({glue:text}`rob_worst_drop`; macro-F1 drops
# by {glue:text}`rob_worst_f1_drop`). The tables give accuracy, then the macro-F1 drop, on the
# official split and the de-duplicated subset, each cell with its bootstrap 95% interval (for the
# drop, paired: the same images clean and corrupted, resampled together).

# %%
figures.robustness_lines(rob["rows"], "official")

# %%
tables.robustness_frame(rob["rows"], "official").style.set_caption("Accuracy, official test split").format(precision=4)

# %%
tables.robustness_frame(rob["rows"], "official", "macro_f1_drop").style.set_caption(
    "Macro-F1 drop from clean, official test split"
).format(precision=4)

# %%
tables.robustness_frame(rob["rows"], "dedup").style.set_caption("Accuracy, de-duplicated test subset").format(
    precision=4
)

# %%
tables.robustness_frame(rob["rows"], "dedup", "macro_f1_drop").style.set_caption(
    "Macro-F1 drop from clean, de-duplicated test subset"
).format(precision=4)

# %% [markdown]
# ## Calibration
#
# Temperature scaling fitted on validation gives T = {glue:text}`cal_t`; the expected calibration
# error on the test split goes from {glue:text}`cal_before` to {glue:text}`cal_after` (the
# predicted classes, hence accuracy, do not change).

# %%
pd.DataFrame(
    [{k: cal[k] for k in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n_val", "n_test")}]
)

# %%
test = read_predictions(model_run)
figures.reliability_diagram(
    test.y,
    test.probs,
    name="before scaling",
    others={f"after (T = {cal['temperature']:.2f})": apply_temperature(test.probs, cal["temperature"])},
    title="Reliability (official test split)",
)

# %% [markdown]
# ## Side by side with a peer package
#
# `tumorlens bench` runs this repository's best single model and its soft-voting ensemble and the
# PyPI package `detect-tumor` (a VGG16 ONNX classifier for the same four classes) on the same
# Testing images, on the same machine. Its training data are not stated; if they include this
# dataset's Testing images, its scores are optimistic.

# %%
if bench and Path(bench).is_file():
    b = read_json(bench, schema="bench")
    display(tables.bench_table(b))
    print(f"{b['n_test']} Testing images ({b['n_dedup']} de-duplicated); {b['environment']['cpus']} CPU cores")
else:
    print(
        "No benchmark result for this profile (run `tumorlens bench --profile <profile> --model RUN "
        "--out results/<profile>/bench.json`)."
    )
