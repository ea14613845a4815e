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
# Every system is scored on the official test split and on its de-duplicated subset, and each
# ensemble is compared with the single best model on the same images.

# %% tags=["parameters"]
profile = "smoke"
member_runs = ["runs/smoke/efficientnet_lite0/seed-42", "runs/smoke/efficientnet_lite0+mab+respath+sbr/seed-42"]
k = 3                 # members kept (best validation macro-F1)
run_dir = "runs/smoke/ensembles"
n_boot = 1000

# %%
from myst_nb import glue

from tumorlens import report
from tumorlens.config import load_config
from tumorlens.ensemble import evaluate_ensembles

cfg = load_config(profile)
results = evaluate_ensembles(cfg, member_runs, run_dir, k=k, n_boot=n_boot)
best = results["systems"]["single best"]["official"]
glue("ens_members", ", ".join(m["name"] for m in results["members"]), display=False)
glue("ens_best_acc", f"{best['accuracy']:.3f}", display=False)
for name, s in results["systems"].items():
    glue(f"ens_{name.replace(' ', '_').replace('+', '_').lower()}_acc", f"{s['official']['accuracy']:.3f}", display=False)

# %% [markdown]
# Members, best first: {glue:text}`ens_members`.
#
# ## Official test split

# %%
report.systems_table(results, "official")

# %% [markdown]
# ## De-duplicated test subset

# %%
report.systems_table(results, "dedup")

# %% [markdown]
# ## Each ensemble against the single best model

# %%
report.comparisons_table(results["comparisons"])
