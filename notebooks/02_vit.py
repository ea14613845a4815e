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
# # A minimal Vision Transformer from scratch (RQ5)
#
# Patch embedding, learned position embeddings, a few pre-norm encoder blocks and a pooled head
# (`tumorlens.vit`), trained from random initialisation in a single phase — no ImageNet, no
# attention modules — and compared, on the same test images, with the transfer-learned standard CNN.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: train now | report: read a saved run (e.g. results/cpu/variants/vit/seed-42)
seed = 42
run_dir = "runs/smoke/vit/seed-42"
cnn_run = "runs/smoke/efficientnet_lite0/seed-42"  # the standard CNN it is compared with
overrides = {}  # the ViT's schedule, dotted keys: {"train.finetune_epochs": 15}

# %%
from pathlib import Path

import pandas as pd
from myst_nb import glue

from tumorlens.book import figures, tables
from tumorlens.config import load_config
from tumorlens.experiments.rq import compare_runs
from tumorlens.records import load_run, read_rows
from tumorlens.training.run import train_run

figures.setup_plotly()
cfg = load_config(profile, overrides={"model.backbone": "vit", "model.modules": [], "seed": seed, **overrides})
if mode == "run":
    train_run(cfg, run_dir=run_dir)
vit = load_run(Path(run_dir))
cnn = load_run(Path(cnn_run)) if (Path(cnn_run) / "predictions.csv").is_file() else None
s, vcfg = vit["summary"], vit["config"]
history = read_rows(Path(run_dir) / "history.csv")
glue("vit_profile", vcfg["profile"], display=False)
glue("vit_size", vcfg["data"]["image_size"], display=False)
glue("vit_arch", ", ".join(f"{k} {v}" for k, v in vcfg["model"]["vit"].items()), display=False)
glue("vit_epochs", len(history), display=False)
glue("vit_params", f"{s['parameters']:,}", display=False)
glue("vit_acc", f"{s['accuracy']:.3f}", display=False)
glue("vit_dedup", f"{s['dedup_accuracy']:.3f}", display=False)
glue("vit_minutes", f"{s['wall_seconds'] / 60:.1f}", display=False)
glue("cnn_name", cnn["variant"] if cnn else "not available", display=False)
glue("cnn_params", f"{cnn['summary']['parameters']:,}" if cnn else "n/a", display=False)
glue("cnn_acc", f"{cnn['summary']['accuracy']:.3f}" if cnn else "n/a", display=False)

# %% [markdown]
# Profile {glue:text}`vit_profile`, {glue:text}`vit_size` px; ViT settings: {glue:text}`vit_arch`;
# {glue:text}`vit_params` parameters, trained for {glue:text}`vit_epochs` epochs in
# {glue:text}`vit_minutes` minutes. Accuracy {glue:text}`vit_acc` on the official test split and
# {glue:text}`vit_dedup` on the de-duplicated subset, against {glue:text}`cnn_acc` for the
# transfer-learned {glue:text}`cnn_name` ({glue:text}`cnn_params` parameters).

# %%
tables.metrics_table(vit["metrics"])

# %%
figures.training_curves(history, title="ViT from scratch: loss and accuracy per epoch")

# %%
figures.per_class_f1(vit["metrics"], title="ViT: F1 per class")

# %%
figures.confusion_matrix(vit["metrics"]["official"]["confusion_matrix"], title="ViT, official test split")

# %% [markdown]
# ## Against the transfer-learned CNN
#
# Differences (ViT minus CNN) on the same images, with paired bootstrap 95% intervals; McNemar's
# p-value on the accuracy rows.

# %%
if cnn:
    display(tables.comparisons_table(compare_runs(vit, cnn, "vit", cnn["variant"], seed=seed)))
    display(
        pd.DataFrame(
            {
                "ViT": {"parameters": s["parameters"], "training minutes": round(s["wall_seconds"] / 60, 1)},
                cnn["variant"]: {
                    "parameters": cnn["summary"]["parameters"],
                    "training minutes": round(cnn["summary"]["wall_seconds"] / 60, 1),
                },
            }
        ).T.rename_axis("model")
    )
else:
    print(f"no CNN run at {cnn_run}: train it first (tumorlens run --profile {profile})")
