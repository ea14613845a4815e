# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # Does a head that pools the strongest locations localise better?
#
# Global average pooling lets evidence spread over the whole slice count as much as a small lesion.
# The localisation ablation trains the standard variant again with heads whose pooling lets a few
# locations decide (log-sum-exp, and the mean of the top 10% of locations; same seed, same
# schedule) and scores each run's maps as the explain step scores its maps: the paper's Grad-CAM and
# the configured map, thresholds tuned on the same tuning half of the expert masks, every number from
# the other half. The first row of each map is the reference: the standard head, trained again beside the others (the
# headline run's recipe and seed, so the three heads come from one machine and one code); an adopted pooling
# must keep the classification scores. A step of its own: it reads other classifiers than the explain
# step, so a change to the weak-mask network leaves it alone.

# %% tags=["parameters"]
profile = "smoke"
mode = "run"  # run: score now | report: read a saved result (results/<profile>/segmentation/localisation)
ablation_runs = []  # these runs scored alike (the first, the reference, has the standard head)
run_dir = "runs/smoke/localisation"
overrides = {}

# %%
from pathlib import Path

from myst_nb import glue

from tumorlens.book import tables
from tumorlens.book.text import localisation_words
from tumorlens.config import load_config
from tumorlens.explain.cam import CamSetting
from tumorlens.explain.run import localisation_run
from tumorlens.utils.files import read_json

cfg = load_config(profile, overrides=overrides)
if mode == "run":
    localisation_run(cfg, ablation_runs, run_dir)
ablation = read_json(Path(run_dir) / "localisation.json", schema="localisation")
glue("localisation_words", localisation_words(ablation, CamSetting.from_config(cfg.segment).name), display=False)
display(tables.localisation_table(ablation["rows"]))

# %% [markdown]
# {glue:text}`localisation_words`
