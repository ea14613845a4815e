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
# # Training one variant
#
# One backbone, one subset of the modules, one seed: two-phase transfer learning (warm-up with the
# backbone frozen, then fine-tuning of its last layers) with prefix caching, evaluated on the
# official test split and on its de-duplicated subset. The parameters cell below says which.

# %% tags=["parameters"]
profile = "smoke"
backbone = "efficientnet_lite0"
modules = []          # any of "mab", "respath", "sbr"
seed = 42
run_dir = "runs/smoke/efficientnet_lite0/seed-42"
overrides = {}        # further settings, dotted keys: {"train.finetune_epochs": 0}

# %%
import csv
import json
from pathlib import Path

from myst_nb import glue

from tumorlens import report
from tumorlens.config import load_config
from tumorlens.train import train_run

report.setup_plotly()
cfg = load_config(profile, overrides={"model.backbone": backbone, "model.modules": modules, "seed": seed,
                                      **overrides})
summary = train_run(cfg, run_dir=run_dir)
metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
history = list(csv.DictReader(open(Path(run_dir) / "history.csv")))
glue("variant", summary["variant"], display=False)
glue("accuracy", f"{summary['accuracy']:.3f}", display=False)
glue("macro_f1", f"{summary['macro_f1']:.3f}", display=False)
glue("wall_seconds", f"{summary['wall_seconds']:.0f}", display=False)

# %% [markdown]
# **{glue:text}`variant`**: accuracy {glue:text}`accuracy` and macro-F1 {glue:text}`macro_f1` on the
# official test split, trained in {glue:text}`wall_seconds` s.

# %%
report.metrics_table(metrics)

# %%
report.training_curves(history, title=f"{summary['variant']}: loss and accuracy per epoch")

# %%
report.confusion_matrix(metrics["official"]["confusion_matrix"], title="Official test split")

# %%
print(json.dumps({k: summary[k] for k in ("parameters", "n_train", "n_val", "n_test", "n_test_dedup",
                                           "timings", "cut")}, indent=1))
