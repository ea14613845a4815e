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
# backbone frozen, then fine-tuning of its last layers with BatchNorm frozen) with prefix caching,
# evaluated on the official test split and on its de-duplicated subset. The parameters cell says
# which; a ViT is trained from scratch in a single phase.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: train now | report: read a saved run (e.g. results/cpu/variants/<variant>/seed-42)
backbone = "efficientnet_lite0"
modules = []  # any of "mab", "respath", "sbr"
seed = 42
run_dir = "runs/smoke/efficientnet_lite0/seed-42"
overrides = {}  # further settings, dotted keys: {"train.finetune_epochs": 0}

# %%
import json
from pathlib import Path

from myst_nb import glue

from tumorlens.book import figures, tables
from tumorlens.config import load_config
from tumorlens.experiments.counterfactual import train
from tumorlens.records import read_rows
from tumorlens.utils.files import read_json

figures.setup_plotly()
cfg = load_config(profile, overrides={"model.backbone": backbone, "model.modules": modules, "seed": seed, **overrides})
if mode == "run":
    train(cfg, run_dir=run_dir)  # with the published weak lesion masks when train.counterfactual is on
run = Path(run_dir)
info = read_json(run / ("run.json" if (run / "run.json").is_file() else "config.json"), schema="run")
summary = info["summary"]
metrics = read_json(run / "metrics.json", schema="metrics")
history = read_rows(run / "history.csv")
glue("variant", summary["variant"], display=False)
glue("accuracy", f"{summary['accuracy']:.3f}", display=False)
glue("macro_f1", f"{summary['macro_f1']:.3f}", display=False)
glue("dedup_accuracy", f"{summary['dedup_accuracy']:.3f}", display=False)
glue("n_dedup", summary["n_test_dedup"], display=False)
glue("wall_minutes", f"{summary['wall_seconds'] / 60:.1f}", display=False)
glue("run_profile", info["config"]["profile"], display=False)

# %% [markdown]
# **{glue:text}`variant`** (profile {glue:text}`run_profile`): accuracy {glue:text}`accuracy` and
# macro-F1 {glue:text}`macro_f1` on the official test split; accuracy {glue:text}`dedup_accuracy`
# on the {glue:text}`n_dedup` de-duplicated test images. Training took {glue:text}`wall_minutes`
# minutes.

# %%
tables.metrics_table(metrics)

# %%
figures.per_class_f1(metrics, title=f"{summary['variant']}: F1 per class")

# %%
figures.training_curves(history, title=f"{summary['variant']}: loss and accuracy per epoch")

# %%
figures.confusion_matrix(metrics["official"]["confusion_matrix"], title="Official test split")

# %%
print(
    json.dumps(
        {k: summary[k] for k in ("parameters", "n_train", "n_val", "n_test", "n_test_dedup", "timings", "cut")},
        indent=1,
    )
)
