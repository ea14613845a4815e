"""The published models: written compactly, rebuilt offline, refused when altered; `predict` uses them."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tumorlens.config import CLASSES
from tumorlens.data.phantoms import render_phantom
from tumorlens.experiments import published
from tumorlens.experiments.predict import Predictor
from tumorlens.models.classifier import build_classifier
from tumorlens.models.inference import predict_images
from tumorlens.utils.files import write_json

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "models" / published.PUBLISHED_PROFILE


def _fake_run(root: Path, modules: tuple[str, ...], seed: int) -> Path:
    """A run directory as training writes it (model, config, metrics), without training."""
    import keras

    keras.utils.set_random_seed(seed)
    run = root / ("mobilenetv2+" + "+".join(modules)) / f"seed-{seed}"
    run.mkdir(parents=True)
    build_classifier("mobilenetv2", modules, image_size=64, weights="none").save(run / "model.keras")
    config = {"profile": "smoke", "seed": seed, "data": {"image_size": 64}}
    config["model"] = {"backbone": "mobilenetv2", "modules": list(modules), "weights": "none", "dropout": 0.3}
    write_json(
        run / "config.json",
        {"config": config, "dataset": {"name": "phantoms"}, "environment": {"git": {"commit": "x"}}, "summary": {}},
        schema="run",
    )
    m = {"n": 4, "accuracy": 0.5, "macro_f1": 0.4}
    write_json(run / "metrics.json", {"official": m, "dedup": m}, schema="metrics")
    return run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return _fake_run(root, ("sbr",), 1), _fake_run(root, ("mab",), 2)


def test_publish_load_round_trip_and_the_ensemble(two_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "no-runs"))
    single, other = two_runs
    out = published.publish("smoke", single=single, ensemble=[single, other], out=tmp_path / "models")
    mf = published.read_manifest("smoke", out)
    assert mf["single"] == "mobilenetv2+sbr/seed-1" and mf["ensemble"] == [mf["single"], "mobilenetv2+mab/seed-2"]
    assert mf["segmentation"] is None and mf["total_bytes"] < published.BUDGET_BYTES
    x = np.random.default_rng(0).integers(0, 255, (6, 64, 64, 3)).astype(np.uint8)
    from tumorlens.models.classifier import load_model

    for run, name in ((single, mf["single"]), (other, mf["ensemble"][1])):
        assert mf["models"][name]["recipe"]["base"] == "none"
        expected = predict_images(load_model(run), x)
        assert np.array_equal(predict_images(published.load(name, "smoke", out), x), expected)
    cfg = published.recipe_config("mobilenetv2+mab/seed-2", "smoke", out, overrides={"seed": 9})
    assert (cfg.model.backbone, cfg.model.modules, cfg.data.image_size, cfg.seed) == ("mobilenetv2", ("mab",), 64, 9)
    with pytest.raises(published.PublishedModelError, match="no published model 'vgg16/seed-1'"):
        published.recipe_config("vgg16/seed-1", "smoke", out)
    pr = Predictor.published(ensemble=True, profile="smoke", folder=out)
    assert pr.model_id == "published:mobilenetv2+sbr/seed-1" and len(pr.members) == 1
    probs, _, _ = pr.predict(x)
    mean = (predict_images(load_model(single), x) + predict_images(load_model(other), x)) / 2
    assert np.allclose(probs, mean, atol=1e-6)
    with pytest.raises(published.PublishedModelError, match="published already"):
        published.publish("smoke", single=single, ensemble=[single, other], out=out)
    before = (out / "mobilenetv2+sbr-seed-1.npz").read_bytes()
    published.publish("smoke", single=single, ensemble=[single], out=out, force=True)
    assert published.read_manifest("smoke", out)["ensemble"] == [mf["single"]]
    assert (out / "mobilenetv2+sbr-seed-1.npz").read_bytes() == before  # unchanged weights: the same file


def test_only_changed_weights_are_stored(two_runs, tmp_path):
    from tumorlens.models.classifier import load_model

    model = load_model(two_runs[0])
    base = build_classifier("mobilenetv2", ("sbr",), image_size=64, weights="none")
    base.set_weights(model.get_weights())
    base.get_layer("predictions").kernel.assign(np.zeros(base.get_layer("predictions").kernel.shape))
    f = published.save_weights(model, tmp_path / "delta.npz", base=base)
    with np.load(f) as z:
        assert [str(n) for n in z["names"]] == [base.get_layer("predictions").kernel.path]
    published.load_weights(base, f)
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), model.get_weights()))
    other = build_classifier("mobilenetv2", ("mab",), image_size=32, weights="none")
    with pytest.raises(published.PublishedModelError, match="does not fit"):
        published.load_weights(other, published.save_weights(model, tmp_path / "all.npz"))


def test_an_altered_missing_or_oversized_publication_is_a_clear_error(two_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "no-runs"))
    out = published.publish("smoke", single=two_runs[0], ensemble=[two_runs[0]], out=tmp_path / "models")
    f = out / "mobilenetv2+sbr-seed-1.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(published.PublishedModelError, match="checksum mismatch"):
        published.load(None, "smoke", out)
    f.unlink()
    with pytest.raises(published.PublishedModelError, match="missing"):
        published.load(None, "smoke", out)
    with pytest.raises(published.PublishedModelError, match="tumorlens publish"):
        published.read_manifest("smoke", tmp_path / "nowhere")
    monkeypatch.setattr(published, "BUDGET_BYTES", 1000)
    with pytest.raises(published.PublishedModelError, match="over the"):
        published.publish("smoke", single=two_runs[0], ensemble=[two_runs[0]], out=tmp_path / "big")
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".big*"))


def _explain_folder(run: Path, folder: Path, seed: int) -> Path:
    """An explain step's products as `tumorlens publish` reads them: segment.json and a (random) segmenter."""
    import keras

    from tumorlens.explain.refine import build_segmenter
    from tumorlens.explain.weak_masks import SegmentParams
    from tumorlens.models.classifier import load_model

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    build_segmenter(load_model(run), "mobilenetv2", width=8).save(folder / "segmenter.keras")
    seg = {"map": "network", "mask": "cam", "cam": "layercam@top", "params": SegmentParams().__dict__}
    seg |= {"segmenter": "segmenter.keras", "network_flip": False, "model": str(run)}
    write_json(folder / "segment.json", seg, schema="segment")
    return folder


def test_the_lesion_studys_mask_source_stays_pinned_through_a_republish(two_runs, tmp_path, monkeypatch):
    """pin_lesion_masks copies the published weak-mask network aside; a republished explain step moves the
    published network but not the counterfactual masks' source; dropping the model it sits on is refused."""
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "no-runs"))
    single, other = two_runs
    bare = published.publish("smoke", single=single, ensemble=[single], out=tmp_path / "bare")
    with pytest.raises(published.PublishedModelError, match="nothing to pin"):
        published.pin_lesion_masks("smoke", bare)
    seg = _explain_folder(single, tmp_path / "explain", seed=1)
    out = published.publish("smoke", single=single, ensemble=[single], segmentation=seg, out=tmp_path / "models")
    assert not published.lesion_masks_source("smoke", out)["pinned"]  # unpinned: the published network itself
    first = published.read_manifest("smoke", out)["segmentation"]["sha256"]
    sub = published.pin_lesion_masks("smoke", out)
    assert sub == out / published.LESION_MASKS and published.pin_lesion_masks("smoke", out) == sub  # idempotent
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
    _, pinned_net, _ = published.load_lesion_segmenter("smoke", out)
    before = np.asarray(pinned_net(x)[1])
    _explain_folder(single, seg, seed=2)  # a new explain step: another decoder
    published.publish("smoke", single=single, ensemble=[single], segmentation=seg, out=out, force=True)
    mf = published.read_manifest("smoke", out)
    src = published.lesion_masks_source("smoke", out)
    assert mf["segmentation"]["sha256"] != first and src["pinned"] and src["entry"]["sha256"] == first
    assert mf["total_bytes"] == sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != "models.json")
    _, pinned_net, _ = published.load_lesion_segmenter("smoke", out)
    np.testing.assert_allclose(np.asarray(pinned_net(x)[1]), before, atol=1e-6)  # the study's masks did not move
    (out / published.LESION_MASKS / "segment.json").write_text(
        (seg / "segment.json").read_text().replace("otsu", "fixed")
    )
    with pytest.raises(published.PublishedModelError, match="digest mismatch"):
        published.lesion_masks_source("smoke", out)
    with pytest.raises(published.PublishedModelError, match="lesion study"):
        published.publish("smoke", single=other, ensemble=[other], out=out, force=True)
    assert published.read_manifest("smoke", out)["single"] == "mobilenetv2+sbr/seed-1"  # nothing was replaced


needs_published = pytest.mark.skipif(
    not (PUBLISHED / "models.json").is_file(), reason="no published models in models/cpu"
)


@needs_published
def test_predict_without_model_uses_the_published_one(tmp_path):
    """What a new user does after `make install`: no training, no --model, no network."""
    (tmp_path / "scans").mkdir()
    scan = tmp_path / "scans" / "scan.png"
    cv2.imwrite(str(scan), render_phantom("glioma", 160, 0)[0])
    env = {**os.environ, "TUMORLENS_RUNS": str(tmp_path / "runs")}
    cmd = [sys.executable, "-m", "tumorlens.cli", "predict", str(scan), "--out", str(tmp_path / "out"), "--segment"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mf = published.read_manifest()
    rec = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert rec["model"] == f"published:{mf['single']}" and rec["class"] in rec["probabilities"]
    assert (tmp_path / "out" / "scan_mask.png").is_file()
    assert "network" in r.stderr  # the published weak-mask network outlines it


def _published_check(real_data, every: int | None):
    """The published single model on the Testing images (all, or a fixed stratified sample of 200 when
    ``every`` is None) gives the published run's class for every image and probabilities within 1e-3; on all
    images `Predictor.published(ensemble=True)` also gives the published soft-voting ensemble's (on every
    ``every``-th image; the fast tier checks the ensemble on 40 Testing files read from disk:
    test_predict_ensemble_published_gives_the_published_ensemble).

    On all images the Testing split comes from `prepare` (scan, audit and split of the whole dataset, as the
    run made it); the sample reads its 200 files straight from the published predictions' paths through the
    same decoder at the same side (`load_images`), so the fast tier skips the cold scan and audit of all
    7,023 images."""
    from tumorlens import records
    from tumorlens.config import load_config
    from tumorlens.data.inventory import ImageRecord
    from tumorlens.data.pipeline import load_images
    from tumorlens.data.prepared import prepare

    mf = published.read_manifest()
    variant, seed = mf["single"].split("/")
    pub = records.read_predictions(REPO / "results" / "cpu" / "variants" / variant / seed)
    r = mf["models"][mf["single"]]["recipe"]
    cfg = load_config("cpu", overrides={"model.backbone": r["backbone"], "model.modules": r["modules"]})
    if every is None:  # 50 per class, seeded: every class and both easy and hard images
        rng = np.random.default_rng(0)
        pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(pub.y == c), 50, replace=False) for c in range(4)]))
        assert all(pub.paths[i].startswith("Testing/") for i in pick)
        recs = [ImageRecord(pub.paths[i], "Testing", CLASSES[pub.y[i]], str(real_data)) for i in pick]
        x = load_images(recs, cfg.data.image_size, show_progress=False)
        ref, n = pub.probs[pick], len(pub.y)
    else:
        prep = prepare(cfg.override({"data.root": str(real_data)}), show_progress=False)
        paths = [r.rel for r in prep.splits["test"]]
        x = prep.images("test", show_progress=False)
        ref, n = pub.align(paths).probs, len(paths)
    probs = predict_images(published.load(), x)
    assert len(probs) == len(ref) == len(x)
    assert np.array_equal(probs.argmax(1), ref.argmax(1))
    assert np.abs(probs - ref).max() < 1e-3
    if every is not None:
        pr = Predictor.published(ensemble=True)
        assert len(pr.members) == len(mf["ensemble"]) - 1
        soft, _, _ = pr.predict(x[::every])
        ens = records.read_predictions(REPO / "results" / "cpu" / "ensembles" / "soft_voting_predictions.csv")
        ens = ens.align(paths).probs[::every]
        assert np.array_equal(soft.argmax(1), ens.argmax(1)) and np.abs(soft - ens).max() < 1e-3
    return n


@needs_published
def test_published_model_reproduces_the_published_predictions_on_a_sample(real_data):
    """The fast tier: the single model on a fixed stratified sample of 200 Testing images (the full tier
    checks all 1,311 and the ensemble on every 8th)."""
    assert _published_check(real_data, None) == 1311


@needs_published
@pytest.mark.full
def test_published_model_reproduces_the_published_predictions(real_data):
    """Done-when of the published model, on every Testing image (the ensemble on every 8th). Fast
    counterpart: test_published_model_reproduces_the_published_predictions_on_a_sample."""
    assert _published_check(real_data, 8) == 1311


@needs_published
def test_predict_ensemble_published_gives_the_published_ensemble(real_data, tmp_path):
    """`tumorlens predict --ensemble published` computes what the published ensemble metric computed: each
    member reads the image letterboxed to its own input side (the policy chosen on validation, where it
    beat resizing the single model's letterboxed image again), on Testing files read from disk."""
    from tumorlens import records
    from tumorlens.experiments.predict import predict_paths

    ens = records.read_predictions(REPO / "results" / "cpu" / "ensembles" / "soft_voting_predictions.csv")
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(ens.y):
        by_class.setdefault(int(c), []).append(i)
    pick = sorted(i for c in by_class for i in by_class[c][:: max(1, len(by_class[c]) // 10)][:10])
    files = [real_data / ens.paths[i] for i in pick]
    rep = predict_paths(files, Predictor.published(ensemble=True), tmp_path / "out", show_progress=False)
    assert rep.n_ok == len(files) == 40
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "out" / "predictions.csv"))}
    got = np.array([[float(rows[f.name][f"p_{c}"]) for c in CLASSES] for f in files])
    assert np.array_equal(got.argmax(1), ens.probs[pick].argmax(1))
    assert np.abs(got - ens.probs[pick]).max() < 1e-3


@needs_published
def test_the_benchmark_is_of_the_published_models_at_a_clean_commit():
    """``results/cpu/bench.json`` (`tumorlens bench --profile cpu`) names models.json's single model and
    ensemble, and was made from a clean commit."""
    bench = json.loads((REPO / "results" / "cpu" / "bench.json").read_text())
    mf = published.read_manifest()
    assert bench["systems"]["tumorlens (single model)"]["model"] == f"published:{mf['single']}"
    assert bench["systems"]["tumorlens (soft-voting ensemble)"]["members"] == [f"published:{n}" for n in mf["ensemble"]]
    assert bench["environment"]["git"]["dirty"] is False


@needs_published
@pytest.mark.full
def test_external_scores_the_published_models_as_runs_too(tmp_path):
    """`tumorlens external` records the published single model and members under their run names as well
    (the same weights), so the RQ tables and the lesion study read the same external scores as the
    external chapter. About 2 minutes (500 BRISC images, three models). Fast counterpart:
    test_external.py::test_every_run_is_scored_on_the_external_set_with_the_soft_vote_of_the_ensemble."""
    from tumorlens.config import load_config
    from tumorlens.experiments.external import external_folders, run_external

    if not external_folders(load_config("cpu")):
        pytest.skip("no external set (brisc2025-cls-dev) beside this checkout")
    mf = published.read_manifest()
    rec = run_external("cpu", out=tmp_path / "external.json", runs=False, show_progress=False)
    s = rec["sets"][0]
    assert set(mf["ensemble"]) | {mf["single"]} <= set(rec["runs"])
    single = rec["runs"][mf["single"]][s["name"]]
    assert single["accuracy"] == s["systems"][f"single: {mf['single']}"]["accuracy"]
    assert single["pred"] == s["systems"][f"single: {mf['single']}"]["pred"]
