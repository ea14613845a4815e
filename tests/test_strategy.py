"""train.strategy: mirrored training over two logical CPU devices, against the default strategy."""

import json
import os
import subprocess
import sys

import pytest

from tumorlens.training.strategy import make_strategy, split_cpu

SCRIPT = """
import csv, json, sys
from tumorlens.training.strategy import split_cpu
split_cpu(2)  # before TensorFlow's runtime starts: this process has /cpu:0 and /cpu:1
from tumorlens.config import load_config
from tumorlens.training.run import train_run
out = {}
for strategy in ("default", "mirrored"):
    over = {"train.strategy": strategy, "paths.runs": sys.argv[1], "model.dropout": 0.0, "train.warmup_epochs": 2,
            "data.phantoms.train_per_class": 20}
    cfg = load_config("smoke", overrides=over)
    s = train_run(cfg, run_dir=f"{sys.argv[1]}/{strategy}", show_progress=False, log=lambda m: None)
    info = json.load(open(f"{sys.argv[1]}/{strategy}/config.json"))
    out[strategy] = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], **info["environment"]["distribution"]}
    out[strategy]["loss"] = [float(r["loss"]) for r in csv.DictReader(open(f"{sys.argv[1]}/{strategy}/history.csv"))]
print(json.dumps(out))
"""


def test_mirrored_over_two_logical_cpus_matches_the_default_strategy(tmp_path):
    env = {**os.environ, "TUMORLENS_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["default"]["replicas"] == 1 and out["mirrored"] == {**out["mirrored"], "replicas": 2}
    assert out["mirrored"]["strategy"] == "MirroredStrategy"
    # the same optimisation: each global batch split in two, the gradients summed (no dropout here, whose
    # draws differ per replica): the same losses up to float summation order, the same accuracy
    assert out["mirrored"]["loss"] == pytest.approx(out["default"]["loss"], rel=1e-5), out
    assert abs(out["mirrored"]["accuracy"] - out["default"]["accuracy"]) <= 1 / 60, out


def test_strategy_names_are_checked():
    with pytest.raises(ValueError, match="received 'tpu'"):
        make_strategy("tpu")
    with pytest.raises(ValueError, match="n=0"):
        split_cpu(0)
