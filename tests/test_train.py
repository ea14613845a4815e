import csv
import json

import keras
import numpy as np
import pytest

from tumorlens.config import load_config
from tumorlens.models.classifier import backbone_layers, build_classifier
from tumorlens.training.cut import find_cut, valid_cuts
from tumorlens.training.fit import train_model
from tumorlens.training.run import train_run
from tumorlens.utils.environment import SIMD_FLAGS


def test_valid_cuts_never_split_a_residual():
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inp)
    b = keras.layers.Conv2D(4, 1, name="b")(a)
    c = keras.layers.Conv2D(4, 1, name="c")(b)
    d = keras.layers.Add(name="d")([a, c])  # a skips over b and c
    e = keras.layers.Conv2D(4, 1, name="e")(d)
    model = keras.Model(inp, e)
    layers = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]
    names = [layers[k].name for k in valid_cuts(model, layers)]
    assert names == ["a", "d", "e"]


def test_find_cut_leaves_at_least_the_requested_layers():
    model = build_classifier("mobilenetv2", (), image_size=32)
    n = len(backbone_layers(model))
    for want in (1, 10, 30, 60):
        k, layers = find_cut(model, want)
        assert n - 1 - k >= want
    k, _ = find_cut(model, 10_000)
    assert k == -1  # everything trainable: nothing to cache


def _tiny_cfg(prefix_cache: bool):
    return load_config(
        "smoke",
        overrides={
            "seed": 3,
            "data.batch_size": 8,
            "model.dropout": 0.0,
            "augment.rotation": 0.0,
            "augment.zoom": 0.0,
            "augment.translation": 0.0,
            "augment.contrast": 0.0,
            "train.warmup_epochs": 2,
            "train.finetune_epochs": 2,
            "train.finetune_layers": 12,
            "train.reduce_lr_patience": 10,
            "train.early_stopping_patience": 10,
            "train.cached_views": 1,
            "train.prefix_cache": prefix_cache,
        },
    )


@pytest.mark.parametrize(
    "modules",
    [pytest.param((), marks=pytest.mark.full, id="no-modules"), pytest.param(("mab", "respath", "sbr"), id="modules")],
)
def test_prefix_caching_matches_uncached_training(modules, tmp_path):
    """Training from cached prefix features equals training through the whole network. Without modules it
    is in the full tier; its fast counterpart is the same test with all three modules (the same cut and
    cache, with more layers after the cut)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (24, 64, 64, 3), dtype=np.uint8)
    y = np.arange(24) % 4
    xv, yv = x[:8], y[:8]
    keras.utils.set_random_seed(1)
    # the pretrained Lite0 (the cpu profile's backbone): random-init backbones give vanishing features
    model = build_classifier("efficientnet_lite0", modules, image_size=64, weights="imagenet", dropout=0.0)
    if "mab" in modules:  # start away from the identity so the modules' weights move
        model.get_layer("mab").gamma.assign(0.3)
        model.get_layer("sbr").gamma.assign(0.3)
    model.save_weights(tmp_path / "init.weights.h5")
    cached = train_model(model, "efficientnet_lite0", x, y, xv, yv, _tiny_cfg(True), shuffle=False, show_progress=False)
    assert cached.timings["prefix_cache"] and cached.cut["trainable_after_cut"] >= 12
    w_cached = [w.copy() for w in cached.model.get_weights()]
    twin = build_classifier("efficientnet_lite0", modules, image_size=64, dropout=0.0)
    twin.load_weights(tmp_path / "init.weights.h5")
    plain = train_model(twin, "efficientnet_lite0", x, y, xv, yv, _tiny_cfg(False), shuffle=False, show_progress=False)
    assert not plain.timings["prefix_cache"]
    w_plain = plain.model.get_weights()
    init = build_classifier("efficientnet_lite0", modules, image_size=64, dropout=0.0)
    init.load_weights(tmp_path / "init.weights.h5")
    moved = sum(not np.allclose(a, b) for a, b in zip(init.get_weights(), w_plain))
    assert moved > 5  # training changed the head and the fine-tuned layers
    for a, b in zip(w_cached, w_plain):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)
    assert [r["phase"] for r in cached.history] == ["warmup"] * 2 + ["finetune"] * 2
    for rc, rp in zip(cached.history, plain.history):
        assert rc["loss"] == pytest.approx(rp["loss"], rel=1e-3)


def test_smoke_run_writes_a_complete_run_directory(tmp_path):
    cfg = load_config(
        "smoke", overrides={"paths.runs": str(tmp_path), "model.backbone": "mobilenetv2", "model.modules": ["sbr"]}
    )
    summary = train_run(cfg, show_progress=False)
    run = tmp_path / "smoke" / "mobilenetv2+sbr" / "seed-42"
    assert summary["run_dir"] == str(run)
    for name in ("model.keras", "history.csv", "config.json", "metrics.json", "predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("official", "dedup"):
        m = metrics[split]
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert set(m["per_class"]) == {"glioma", "meningioma", "notumor", "pituitary"}
        assert np.array(m["confusion_matrix"]).sum() == m["n"]
    assert metrics["official"]["n"] == 60 and metrics["dedup"]["n"] < 60
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert len(rows) == 60 and rows[0]["path"].startswith("Testing/")
    assert abs(sum(float(rows[0][f"p_{c}"]) for c in ("glioma", "meningioma", "notumor", "pituitary")) - 1) < 1e-4
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["profile"] == "smoke" and info["config"]["model"]["modules"] == ["sbr"]
    assert info["environment"]["packages"]["tensorflow"] and "commit" in info["environment"]["git"]
    assert info["summary"]["wall_seconds"] > 0
    env = info["environment"]
    assert env["cpu_model"] and env["determinism"]["op_determinism"] is True
    assert isinstance(env["cpu_flags"], list) and set(env["cpu_flags"]) <= set(SIMD_FLAGS)
    assert env["determinism"]["inter_op_threads"] == 1
    hist = list(csv.DictReader(open(run / "history.csv")))
    assert [h["phase"] for h in hist] == ["warmup", "finetune"]
    model = keras.models.load_model(run / "model.keras")
    assert model.name == "mobilenetv2-sbr"


def test_shared_prefix_cache_is_reused_and_changes_nothing(tmp_path):
    from tumorlens import paths

    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    y = np.arange(16) % 4
    cfg = _tiny_cfg(True).override(
        {"train.cached_views": 2, "augment.rotation": 0.1, "train.warmup_epochs": 1, "train.finetune_epochs": 1}
    )
    keys = {"train": f"unit-train-{tmp_path.name}", "val": f"unit-val-{tmp_path.name}"}  # fresh keys: a miss first
    weights, stamps = [], []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        model = build_classifier("efficientnet_lite0", ("sbr",), image_size=64, weights="imagenet", dropout=0.0)
        res = train_model(
            model, "efficientnet_lite0", x, y, x[:8], y[:8], cfg, cache_keys=keys, shuffle=False, show_progress=False
        )
        weights.append([w.copy() for w in res.model.get_weights()])
        found = sorted((paths.cache_root() / "prefix").glob(f"unit-*-{tmp_path.name}*.npz"))
        stamps.append({p.name: p.stat().st_mtime_ns for p in found})
    files = sorted(stamps[0])
    assert len(files) == 3 and len({f[f.index("block") :] for f in files}) == 1  # 2 train views + val, one cut
    assert stamps[1] == stamps[0]  # the second run read the cache (a hit), it did not write it again
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_features_from_the_prefix_cache_match_a_full_pass(tmp_path, monkeypatch):
    """Ensemble features read through the shared prefix cache equal the model's own forward pass."""
    import tumorlens.evaluation.ensembles as ens
    from tumorlens.data import prepare
    from tumorlens.evaluation.ensembles import run_features
    from tumorlens.models.inference import penultimate_features

    cfg = load_config(
        "smoke",
        overrides={
            "paths.runs": str(tmp_path),
            "data.phantoms.train_per_class": 12,
            "data.phantoms.test_per_class": 4,
            "data.phantoms.duplicates": 0,
            "model.weights": "imagenet",
            "model.modules": ["sbr"],
        },
    )
    prep = prepare(cfg, show_progress=False)
    summary = train_run(cfg, prep, show_progress=False)

    def no_full_pass(*a, **k):
        raise AssertionError("the features should come from the prefix cache")

    monkeypatch.setattr(ens, "penultimate_features", no_full_pass)
    feats = run_features(summary["run_dir"], prep, ("train", "val", "test"), show_progress=False)
    monkeypatch.undo()
    from tumorlens.models.classifier import load_model

    model = load_model(summary["run_dir"])
    for split in ("val", "test"):
        np.testing.assert_allclose(
            feats[split], penultimate_features(model, prep.images(split, False)), rtol=1e-4, atol=1e-5
        )


def test_a_failed_rerun_leaves_the_finished_run_as_it_was(tmp_path, monkeypatch):
    from tumorlens.training import run as run_mod

    cfg = load_config("smoke", overrides={"paths.runs": str(tmp_path)})
    final = run_mod.run_dir_for(cfg)
    final.mkdir(parents=True)
    (final / "metrics.json").write_text('{"official": "the good run"}')
    (final / "notebook.ipynb").write_text("the runner's copy")

    def boom(*a, **k):
        raise RuntimeError("training failed")

    monkeypatch.setattr(run_mod, "prepare", boom)
    with pytest.raises(RuntimeError, match="training failed"):
        run_mod.train_run(cfg, show_progress=False)
    assert (final / "metrics.json").read_text() == '{"official": "the good run"}'
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # no staging folder left behind


def test_a_finished_run_replaces_the_old_one_and_keeps_the_runners_files(tmp_path):
    from tumorlens.training.run import _move_into_place

    final, staging = tmp_path / "seed-1", tmp_path / ".seed-1.partial"
    final.mkdir()
    staging.mkdir()
    (final / "metrics.json").write_text("old")
    (final / "history.csv").write_text("old")
    (final / "notebook.ipynb").write_text("runner")
    (staging / "metrics.json").write_text("new")
    _move_into_place(staging, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-1"]
    assert sorted(p.name for p in final.iterdir()) == ["metrics.json", "notebook.ipynb"]  # stale history gone
    assert (final / "metrics.json").read_text() == "new" and (final / "notebook.ipynb").read_text() == "runner"


def test_non_finite_weights_or_predictions_are_never_saved():
    from tumorlens.training.run import _check_finite

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")])
    _check_finite(model, {"test": np.zeros((2, 4))})
    with pytest.raises(RuntimeError, match="non-finite test predictions"):
        _check_finite(model, {"test": np.array([[np.nan, 1.0]])})
    w, b = model.get_layer("d").get_weights()
    w[0, 0] = np.nan
    model.get_layer("d").set_weights([w, b])
    with pytest.raises(RuntimeError, match="non-finite weights"):
        _check_finite(model, {})


def test_two_reruns_in_fresh_processes_are_identical(tmp_path):
    """train.deterministic: the same recipe trained twice, each in its own process with its own cache,
    gives the same predictions to the last digit (without it, reruns differ: benchmarks/determinism.py)."""
    import os
    import subprocess
    import sys

    outs, procs = [], []
    for k in range(2):  # at the same time: the two processes also compete for the cores
        out = tmp_path / f"rerun-{k}"
        env = {**os.environ, "TUMORLENS_CACHE": str(tmp_path / f"cache-{k}"), "TUMORLENS_RUNS": str(tmp_path)}
        env.pop("TF_NUM_INTEROP_THREADS", None)  # the run must set up determinism itself
        cmd = [sys.executable, "-m", "tumorlens.cli", "train", "--profile", "smoke", "--out", str(out)]
        cmd += ["--set", "data.phantoms.train_per_class=20"]  # fewer phantoms: the same code paths, less training
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        outs.append(out)
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    a, b = ((o / "predictions.csv").read_text() for o in outs)
    assert a == b and a.count("\n") == 61
    ma, mb = (json.loads((o / "metrics.json").read_text()) for o in outs)
    assert ma == mb
    ha, hb = (list(csv.DictReader(open(o / "history.csv"))) for o in outs)
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
