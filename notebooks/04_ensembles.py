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
# # Ensembles: soft voting and CNN features with logistic regression or an SVM
#
# The members are the trained runs with the best **validation** macro-F1 — the test split is never
# used to choose them. Soft voting averages their class probabilities; the hybrids feed their
# penultimate features to scikit-learn pipelines tuned by cross-validation on the training split.
# Every system is scored on the official test split and on its de-duplicated subset (95% bootstrap
# intervals), and each ensemble is compared with the single best model on the same images.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: fit and score now | report: read a saved result (results/<profile>/ensembles)
member_runs = ["runs/smoke/efficientnet_lite0/seed-42", "runs/smoke/efficientnet_lite0+mab+respath+sbr/seed-42"]
k = 3  # members kept (best validation macro-F1)
run_dir = "runs/smoke/ensembles"
n_boot = 2000

# %%
from pathlib import Path

from myst_nb import glue

from tumorlens.book import tables
from tumorlens.config import load_config
from tumorlens.evaluation.ensembles import evaluate_ensembles
from tumorlens.utils.files import read_json

cfg = load_config(profile)
if mode == "run":
    evaluate_ensembles(cfg, member_runs, run_dir, k=k, n_boot=n_boot)
results = read_json(Path(run_dir) / "ensembles.json", schema="ensembles")
glue("ens_members", ", ".join(m["name"] for m in results["members"]), display=False)
glue("ens_n_dedup", results["n_dedup"], display=False)

# %% [markdown]
# Members, best first by validation macro-F1: {glue:text}`ens_members`.
#
# ## Official test split

# %%
tables.systems_table(results, "official")

# %% [markdown]
# ## De-duplicated test subset ({glue:text}`ens_n_dedup` images)

# %%
tables.systems_table(results, "dedup")

# %% [markdown]
# ## Each ensemble against the single best model
#
# The difference is the ensemble minus the single best model on the same images, with a paired
# bootstrap 95% interval; McNemar's test asks whether their errors differ.

# %%
tables.comparisons_table(results["comparisons"])
