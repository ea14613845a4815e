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
import json
from pathlib import Path

import pandas as pd
from myst_nb import glue

from tumorlens.book import figures, tables
from tumorlens.config import load_config
from tumorlens.evaluation.robustness import apply_temperature, evaluate_robustness
from tumorlens.records import read_predictions

figures.setup_plotly()
cfg = load_config(profile)
if mode == "run":
    evaluate_robustness(cfg, model_run, run_dir)
rob = json.loads((Path(run_dir) / "robustness.json").read_text())
cal = rob["calibration"]
worst = max((r for r in rob["rows"] if r["test_set"] == "official"), key=lambda r: r["accuracy_drop"])
glue("rob_run", rob["run"], display=False)
glue("rob_worst", f"{worst['kind']} at severity {worst['severity']}", display=False)
glue("rob_worst_drop", f"{worst['accuracy_drop']:.3f}", display=False)
glue("rob_worst_f1_drop", f"{worst['macro_f1_drop']:.3f}", display=False)
glue(
    "rob_profile",
    f"{profile} ({'synthetic phantoms' if cfg.data.source == 'phantoms' else 'Kaggle Brain Tumor MRI'}, "
    f"{cfg.data.image_size} px)",
    display=False,
)
glue("cal_t", f"{cal['temperature']:.2f}", display=False)
glue("cal_before", f"{cal['ece_before']:.4f}", display=False)
glue("cal_after", f"{cal['ece_after']:.4f}", display=False)

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
    b = json.loads(Path(bench).read_text())
    display(
        pd.DataFrame(
            {
                name: {
                    "accuracy": round(s["official_accuracy"], 4),
                    "macro-F1": round(s["official_macro_f1"], 4),
                    "accuracy (dedup)": round(s["dedup_accuracy"], 4),
                    "macro-F1 (dedup)": round(s["dedup_macro_f1"], 4),
                    "images/s (batched)": round(s["images_per_second"], 1),
                    "predict + Grad-CAM + GrabCut, ms/image": round(s["explain_segment_ms_median"])
                    if "explain_segment_ms_median" in s
                    else None,
                }
                for name, s in b["systems"].items()
            }
        ).T
    )
    print(f"{b['n_test']} Testing images ({b['n_dedup']} de-duplicated); {b['environment']['cpus']} CPU cores")
else:
    print(
        "No benchmark result for this profile (run `tumorlens bench --profile <profile> --model RUN "
        "--out results/<profile>/bench.json`)."
    )
