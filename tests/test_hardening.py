"""Issue #36, each reproducer as a test: names that escape --out, long names, concurrent runs, blank and NaN
inputs, DICOM tags, usage errors, skipped folders, interrupted and overwritten runs, duplicate YAML keys,
re-signed weights, pickles, and a command line that imports no stage to parse."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tumorlens.data.phantoms import render_phantom
from tumorlens.errors import BadImageError, ConfigError, OutputLockedError, UsageError

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tree(root: Path, skip: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` but ``skip`` (and what is under it), with the bytes of each file."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
        if p != skip and skip not in p.parents
    }


def _phantom(path: Path, seed: int = 1, size: int = 64) -> Path:
    cv2.imwrite(str(path), render_phantom("glioma", size, seed)[0])
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tumorlens.models.classifier import build_classifier

    d = tmp_path_factory.mktemp("model")
    build_classifier("mobilenetv2", ("sbr",), image_size=64, weights="none").save(d / "model.keras")
    return d


@pytest.fixture(scope="module")
def predictor(model_dir):
    from tumorlens.experiments.predict import Predictor

    return Predictor.load(model_dir)


def _predict(inputs, predictor, out, **kw):
    from tumorlens.experiments.predict import predict_paths

    return predict_paths(inputs, predictor, out, show_progress=False, **kw)


# 1. names ------------------------------------------------------------------------------------------------
def test_an_input_named_dot_dot_jpg_writes_nothing_beside_out(tmp_path, predictor):
    work = tmp_path / "work"
    work.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    _phantom(src / "..jpg")
    out = work / "out"
    before = _tree(tmp_path, out)
    rep = _predict([src / "..jpg"], predictor, out, segment=True)
    assert rep.n_ok == 1
    assert _tree(tmp_path, out) == before, "nothing written beside --out"
    (row,) = _rows(out / "predictions.csv")
    assert row["input"].endswith("..jpg") and (out / row["output"]).is_file()
    assert (out / row["output"]).resolve().parent == out.resolve()


def test_a_240_byte_file_name_is_shortened_with_a_hash_and_mapped_in_the_csv(tmp_path, predictor):
    src = tmp_path / "src"
    src.mkdir()
    long_a, long_b = "a" * 240 + ".png", "a" * 239 + "b.png"  # 240-byte stems, alike for their first 239
    for n in (long_a, long_b):
        _phantom(src / n)
    rep = _predict([src], predictor, tmp_path / "out", explain=True)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert rep.n_ok == 2 and len(rows) == 2 and not rep.problems
    names = {Path(r["input"]).name: r["output"] for r in rows}
    assert set(names) == {long_a, long_b} and len(set(names.values())) == 2
    from tumorlens.experiments.predict import MAX_PART_BYTES, safe_part

    for name, output in names.items():
        leaf = Path(output).name
        assert len(leaf.encode()) <= MAX_PART_BYTES + len(".json") and "~" in leaf
        assert (tmp_path / "out" / output).is_file()
        assert (tmp_path / "out" / output.replace(".json", "_cam.png")).is_file()
    assert [safe_part(n) for n in (".", "..", "", ".hidden")] == ["_", "__", "_", "_hidden"]
    assert safe_part("a/b\\c\x00") == "a_b_c_"
    assert len(safe_part("é" * 200).encode()) <= MAX_PART_BYTES


def test_atomic_writes_take_any_name_a_file_system_takes(tmp_path):
    from tumorlens.utils.files import write_text

    name = "é" * 124 + ".json"  # 253 bytes: the temporary name must not grow past 255
    write_text(tmp_path / name, "{}")
    assert (tmp_path / name).read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_names_that_differ_only_in_case_or_normalisation_get_separate_results(tmp_path):
    from tumorlens.experiments.predict import find_inputs

    src = tmp_path / "src"
    (src / "x.json").mkdir(parents=True)  # a folder whose results folder would be the file x.json
    for n in ("café.png", "cafe\u0301.png", "CAFÉ.png", "x.png", "x.json/y.png"):
        _phantom(src / n)
    (src / "predictions.csv").mkdir()
    _phantom(src / "predictions.csv" / "z.png")
    files, problems = find_inputs([src, src / "predictions.csv"])
    stems = [s for _, s in files]
    keys = [s.casefold() for s in stems]
    assert not problems and len(files) == 7 and len(set(keys)) == 7
    results = {s + e for s in stems for e in (".json", "_cam.png", "_mask.png")}
    folders = {"/".join(s.split("/")[:i]) for s in stems for i in range(1, s.count("/") + 1)}
    assert not results & folders, "no result file is another result's folder"
    assert "predictions.csv" not in {s.split("/")[0] for s in stems}, "the results table is never a folder"


# 2. lock, INCOMPLETE, --overwrite ---------------------------------------------------------------------------
def test_a_second_run_into_a_held_out_is_refused_and_a_dead_holder_s_lock_is_taken_over(tmp_path, predictor, capsys):
    from tumorlens.cli import main
    from tumorlens.experiments.predict import LOCK_FILE, out_lock

    (tmp_path / "src").mkdir()
    img = _phantom(tmp_path / "src" / "scan.png")
    out = tmp_path / "out"
    out.mkdir()
    with out_lock(out):
        assert str(os.getpid()) in (out / LOCK_FILE).read_text()
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()}"):
            _predict([img], predictor, out)
        code = main(["predict", str(img), "--model", str(predictor.model_id), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "being written by another tumorlens predict" in err
        assert len([ln for ln in err.splitlines() if ln.startswith("tumorlens: error:")]) == 1
    assert not (out / LOCK_FILE).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(f"{dead.pid} somehost 2020-01-01T00:00:00\n")  # left by a killed run
    rep = _predict([img], predictor, out)
    assert rep.n_ok == 1 and any(f"process {dead.pid}" in n and "no longer runs" in n for n in rep.notes)
    assert not (out / LOCK_FILE).exists()


def test_an_interrupted_run_leaves_incomplete_and_its_tables_and_releases_the_lock(tmp_path, predictor, monkeypatch):
    import tumorlens.experiments.predict as predict_mod

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        _phantom(src / f"s{i}.png", seed=i)
    calls = []
    real = predict_mod.letterbox

    def interrupted(*a, **k):  # Ctrl-C while the second image is being prepared
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(predict_mod, "letterbox", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _predict([src], predictor, out, batch_size=1)
    assert (out / "INCOMPLETE").is_file()
    assert len(_rows(out / "predictions.csv")) == 1  # what was done before the interrupt
    assert not (out / predict_mod.LOCK_FILE).exists()
    monkeypatch.setattr(predict_mod, "letterbox", real)
    rep = _predict([src], predictor, out, overwrite=True)
    assert rep.n_ok == 3 and not (out / "INCOMPLETE").exists()


def test_overwrite_clears_the_earlier_run_and_nothing_else(tmp_path, predictor):
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a", "b", "c"):
        _phantom(src / f"{n}.png")
    out = tmp_path / "out"
    _predict([src / "a.png", src / "b.png"], predictor, out, segment=True)
    assert {"a.json", "a_mask.png", "b.json"} <= {p.name for p in out.iterdir()}
    (out / "my notes.txt").write_text("kept")
    with pytest.raises(UsageError, match="not empty"):
        _predict([src / "c.png"], predictor, out)
    rep = _predict([src / "c.png"], predictor, out, overwrite=True)
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["c.json", "my notes.txt", "predictions.csv", "problems.csv"], left
    assert any("kept 1 file" in n for n in rep.notes)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="did not write"):
        _predict([src / "c.png"], predictor, foreign, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "precious"


# 3. the input guard ---------------------------------------------------------------------------------------
def test_nan_black_and_constant_images_are_flagged_never_a_silent_class(tmp_path, predictor):
    src = tmp_path / "src"
    src.mkdir()
    a = np.random.default_rng(0).random((64, 64)).astype(np.float32) * 1000
    a[:8] = np.nan
    a[9, 9] = np.inf
    Image.fromarray(a, mode="F").save(src / "some_nan.tif")
    Image.fromarray(np.full((64, 64), np.nan, np.float32), mode="F").save(src / "all_nan.tif")
    cv2.imwrite(str(src / "black.png"), np.zeros((64, 64), np.uint8))
    cv2.imwrite(str(src / "grey.png"), np.full((64, 64), 128, np.uint8) + (np.arange(64) % 2).astype(np.uint8))
    _phantom(src / "ok.png")
    out = tmp_path / "out"
    rep = _predict([src], predictor, out)
    rows = {Path(r["input"]).name: r for r in _rows(out / "predictions.csv")}
    assert set(rows) == {"some_nan.tif", "black.png", "grey.png", "ok.png"}
    assert {Path(p["path"]).name: p["reason"] for p in rep.problems} == {
        "all_nan.tif": "no finite pixel value (every pixel is NaN or infinite)"
    }
    assert rows["some_nan.tif"]["guard"] == "warning" and "non-finite" in rows["some_nan.tif"]["guard_reasons"]
    assert rows["black.png"]["guard"] == "warning" and "blank" in rows["black.png"]["guard_reasons"]
    assert rows["grey.png"]["guard"] == "warning" and "near-constant" in rows["grey.png"]["guard_reasons"]
    assert rows["ok.png"]["guard"] == "valid" and rep.n_flagged == 3
    rec = json.loads((out / rows["black.png"]["output"]).read_text())
    assert rec["guard"]["status"] == "warning" and "not made" in rec["guard"]["statistics"]  # no stats for a run


def test_the_guard_statistics_round_trip_and_flag_what_lies_outside(tmp_path):
    from tumorlens.evaluation.guard import GuardStats, fit_guard, verdicts

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (4, 40))
    y = np.repeat(np.arange(4), 200)
    train = centres[y] + rng.normal(0, 1, (800, 40))
    val = centres[y[::4]] + rng.normal(0, 1, (200, 40))
    stats = fit_guard(train, y, val, rng.uniform(0, 10, 200), k=8, false_alarm=0.02)
    assert 0.01 <= stats.info["false_alarm_validation"] <= 0.05
    again = GuardStats.load(stats.save(tmp_path / "guard.npz"))  # float16 on disk, no pickle
    np.testing.assert_allclose(again.score(val), stats.score(val), rtol=2e-2)
    assert again.threshold == stats.threshold and again.background_threshold == stats.background_threshold
    far = centres[:1] + rng.normal(0, 1, (50, 40)) + 8 * rng.normal(0, 1, (1, 40))
    v = verdicts([[]] * 50, far, stats, [0.0] * 50)
    assert all(x.status == "warning" and "outside the training distribution" in x.reasons[0] for x in v)
    bright = verdicts([[]], val[:1], stats, [200.0])[0]
    assert bright.status == "warning" and "bright background" in bright.reasons[0]
    with pytest.raises(ValueError, match="false_alarm"):
        fit_guard(train, y, val, false_alarm=0.7)


def test_the_published_guard_flags_noise_and_passes_real_scans(tmp_path, real_data):
    from tumorlens.experiments import published
    from tumorlens.experiments.predict import Predictor

    if published.read_manifest().get("guard") is None:
        pytest.skip("no guard published in models/cpu")
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "noise.png"), np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "inverted.png"), 255 - cv2.imread(str(next((real_data / "Testing" / "glioma").iterdir()))))
    picks = [sorted((real_data / "Testing" / c).iterdir())[3] for c in ("glioma", "notumor")]
    rep = _predict([src, *picks], Predictor.published(), tmp_path / "out")
    rows = {Path(r["input"]).name: r for r in _rows(tmp_path / "out" / "predictions.csv")}
    assert rep.n_ok == 4
    assert rows["noise.png"]["guard"] == "warning" and "outside the training" in rows["noise.png"]["guard_reasons"]
    assert rows["inverted.png"]["guard"] == "warning" and "bright background" in rows["inverted.png"]["guard_reasons"]
    assert all(rows[p.name]["guard"] == "valid" for p in picks)


# 4. DICOM and EXIF ----------------------------------------------------------------------------------------
def _dicom(path, pixels, **tags):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape[:2]
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels.astype(np.uint8).tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # the NaN window is written on purpose
def test_dicom_size_slope_and_window_are_checked(tmp_path):
    pytest.importorskip("pydicom")
    from tumorlens.data.io import read_dicom

    raw = (np.arange(64 * 64).reshape(64, 64) % 1000).astype(np.uint16)
    with pytest.raises(BadImageError, match="too small"):
        read_dicom(_dicom(tmp_path / "rgb1.dcm", np.full((1, 1, 3), 200, np.uint8)))
    assert read_dicom(_dicom(tmp_path / "rgb.dcm", np.full((20, 30, 3), 200, np.uint8))).shape == (20, 30, 3)
    with pytest.raises(BadImageError, match="RescaleSlope 0.0"):
        read_dicom(_dicom(tmp_path / "slope0.dcm", raw, RescaleSlope=0, RescaleIntercept=0))
    with pytest.raises(BadImageError, match="WindowCenter=nan"):
        read_dicom(_dicom(tmp_path / "nanwin.dcm", raw, WindowCenter="NaN", WindowWidth=400))
    with pytest.raises(BadImageError, match="WindowWidth=0.0"):
        read_dicom(_dicom(tmp_path / "zerowidth.dcm", raw, WindowCenter=100, WindowWidth=0))
    ok = read_dicom(_dicom(tmp_path / "ok.dcm", raw, RescaleSlope=2, RescaleIntercept=-100))
    assert ok.min() == 0 and ok.max() == 255


def test_exif_orientation_is_applied_and_noted(tmp_path):
    from tumorlens.data.io import read_any_noted

    a = np.zeros((40, 80), np.uint8)
    a[:, :10] = 255  # a bright band on the left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    im.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    arr, note = read_any_noted(tmp_path / "turned.jpg")
    assert arr.shape == (80, 40, 3) and "EXIF orientation 6" in note
    assert arr[:10, :, 0].mean() > 200 and arr[-10:, :, 0].mean() < 50  # the band is now on top


# 5. usage errors, numeric options, YAML -------------------------------------------------------------------
def test_usage_errors_exit_2_with_one_line(tmp_path, model_dir, capsys):
    from tumorlens.cli import main

    (tmp_path / "src").mkdir()
    img = _phantom(tmp_path / "src" / "scan.png")
    out = str(tmp_path / "o")
    assert main(["predict", str(img), "--ensemble", "published", "--model", str(model_dir), "--out", out]) == 2
    assert main(["predict", str(img), "--ensemble", str(model_dir), "--out", out]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("tumorlens: error:")]
    assert len(err) == 2 and "takes no --model" in err[0] and "pass --model too" in err[1]


@pytest.mark.parametrize(
    "option", [["--correlation", "nan"], ["--correlation", "2"], ["--correlation", "-1"], ["--hash-distance", "-5"]]
)
def test_audit_thresholds_out_of_range_are_usage_errors(option, phantom_root, capsys):
    from tumorlens.cli import main

    with pytest.raises(SystemExit) as e:
        main(["data", "audit", str(phantom_root), "--quiet", *option])
    assert e.value.code == 2 and option[1] in capsys.readouterr().err


def test_the_library_refuses_audit_thresholds_that_disable_it(phantom_root):
    from tumorlens.data.inventory import scan
    from tumorlens.data.leakage import audit

    report = scan(phantom_root, show_progress=False)
    for kw in ({"correlation": float("nan")}, {"correlation": 0.0}, {"hash_distance": -1}, {"hash_distance": 2.5}):
        with pytest.raises(UsageError, match=list(kw)[0]):
            audit(report, show_progress=False, use_cache=False, **kw)


def test_duplicate_yaml_keys_are_refused_with_file_and_line(tmp_path):
    from tumorlens.config import load_config

    f = tmp_path / "_config.yml"
    f.write_text("base:\n  seed: 1\n  data:\n    image_size: 64\n    image_size: 96\nprofiles: {}\n")
    with pytest.raises(ConfigError, match=r"_config.yml: line 5: duplicate key 'image_size' \(first given on line 4\)"):
        load_config(path=f)
    f.write_text("base:\n  seed: 1\nprofiles:\n  a: {seed: 2}\n  a: {seed: 3}\n")
    with pytest.raises(ConfigError, match="line 5: duplicate key 'a'"):
        load_config("a", path=f)


# 6. skipped folders and files are reported ----------------------------------------------------------------
def test_scan_and_external_name_symlinked_unreadable_and_dicom_entries(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    from tumorlens.data.inventory import scan
    from tumorlens.evaluation.external import load_external, score_external

    root = tmp_path / "ext"
    for cls in ("glioma", "meningioma", "no_tumor", "pituitary"):
        (root / cls).mkdir(parents=True)
        _phantom(root / cls / f"{cls}_ax.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _phantom(elsewhere / "x.png")
    (root / "glioma" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "glioma" / "locked").mkdir()
    _phantom(root / "glioma" / "locked" / "y.png")
    _dicom(root / "meningioma" / "slice.dcm", np.zeros((32, 32), np.uint16))
    (root / "pituitary" / ".cache").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):  # as for a folder of another user (tests run as root: chmod cannot show it)
        if Path(path) == root / "glioma" / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = scan(root, show_progress=False, use_cache=False)
    why = {i["path"]: i["reason"] for i in report.ignored}
    assert "symbolic link to a folder" in why["glioma/linked"]
    assert "not readable (permission denied)" in why["glioma/locked"]
    assert "a DICOM file" in why["meningioma/slice.dcm"]
    assert "hidden folder" in why["pituitary/.cache"]
    assert all(i["path"] in report.summary() for i in report.ignored)
    ext = load_external(root, 32, show_progress=False)
    score = score_external(np.full((len(ext.y), 4), 0.25), ext, n_boot=10)
    assert score["n_skipped"] == 4 and {s["path"] for s in score["skipped"]} == set(why)


def test_predict_reports_hidden_symlinked_and_unreadable_entries(tmp_path, predictor, monkeypatch):
    src = tmp_path / "src"
    (src / "locked").mkdir(parents=True)
    _phantom(src / "a.png")
    _phantom(src / ".hidden.png")
    other = tmp_path / "other"
    other.mkdir()
    _phantom(other / "b.png")
    (src / "link").symlink_to(other, target_is_directory=True)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == src / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rep = _predict([src], predictor, tmp_path / "out")
    why = {Path(p["path"]).name: p["reason"] for p in rep.problems}
    assert rep.n_ok == 1 and set(why) == {".hidden.png", "link", "locked"}
    assert "hidden" in why[".hidden.png"] and "symbolic link to a folder" in why["link"]
    assert "not readable" in why["locked"]


# 7. weights: digests bind recipes; no pickle -----------------------------------------------------------------
def _fake_run(root: Path, seed: int) -> Path:
    import keras

    from tumorlens.models.classifier import build_classifier
    from tumorlens.utils.files import write_json

    keras.utils.set_random_seed(seed)
    run = root / "mobilenetv2" / f"seed-{seed}"
    run.mkdir(parents=True)
    build_classifier("mobilenetv2", (), image_size=32, weights="none").save(run / "model.keras")
    config = {"profile": "smoke", "seed": seed, "data": {"image_size": 32}}
    config["model"] = {"backbone": "mobilenetv2", "modules": [], "weights": "none", "dropout": 0.3}
    write_json(
        run / "config.json",
        {"config": config, "dataset": {"name": "x"}, "environment": {"git": {"commit": "x"}}, "summary": {}},
        schema="run",
    )
    m = {"n": 4, "accuracy": 0.5, "macro_f1": 0.4}
    write_json(run / "metrics.json", {"official": m, "dedup": m}, schema="metrics")
    return run


def test_another_model_s_weights_with_a_re_signed_checksum_and_an_edited_recipe_are_refused(tmp_path, monkeypatch):
    from tumorlens.experiments import published
    from tumorlens.utils.files import file_entry, read_json, write_json

    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "no-runs"))
    a, b = _fake_run(tmp_path / "runs", 1), _fake_run(tmp_path / "runs", 2)  # one recipe, two seeds
    out = published.publish("smoke", single=a, ensemble=[a, b], out=tmp_path / "models")
    published.load("mobilenetv2/seed-1", "smoke", out)
    mf_file = out / "models.json"
    original = mf_file.read_text()
    fa, fb = out / "mobilenetv2-seed-1.npz", out / "mobilenetv2-seed-2.npz"
    fa.write_bytes(fb.read_bytes())  # seed 2's weights in seed 1's place ...
    mf = read_json(mf_file, schema="published_models")
    mf["models"]["mobilenetv2/seed-1"] |= file_entry(fa)  # ... and its sha256 and size re-signed
    mf.pop("schema")
    write_json(mf_file, mf, schema="published_models")
    with pytest.raises(published.PublishedModelError, match="digest mismatch") as e:
        published.load("mobilenetv2/seed-1", "smoke", out)
    assert "results/" not in str(e.value) and "git checkout -- " in str(e.value)
    mf = json.loads(original)
    mf["models"]["mobilenetv2/seed-2"]["recipe"]["dropout"] = 0.5  # an edited recipe, bytes untouched
    mf_file.write_text(json.dumps(mf))
    with pytest.raises(published.PublishedModelError, match="digest mismatch"):
        published.load("mobilenetv2/seed-2", "smoke", out)


def test_every_published_entry_verifies_and_the_checksum_hint_names_models(tmp_path):
    import shutil

    from tumorlens.experiments import published

    folder = published.models_dir()
    if not (folder / "models.json").is_file():
        pytest.skip("no published models")
    mf = published.read_manifest()
    for name, entry in mf["models"].items():
        published._checked_file(folder, entry, name)
    if mf.get("segmentation", {}).get("file"):
        published._checked_file(folder, mf["segmentation"], "segmentation")
        assert published.segmentation_dir() == folder
    if mf.get("guard"):
        stats = published.load_guard()
        assert stats.info["model"] == f"published:{mf['single']}" and (folder / "guard.npz").stat().st_size < 200_000
    assert mf["total_bytes"] <= published.BUDGET_BYTES
    copy = tmp_path / "cpu"
    shutil.copytree(folder, copy)
    seg = json.loads((copy / "segment.json").read_text())
    seg["params"]["lo"] = seg["params"]["lo"] + 0.01  # a threshold edited in segment.json
    (copy / "segment.json").write_text(json.dumps(seg))
    if mf.get("segmentation", {}).get("file"):
        with pytest.raises(published.PublishedModelError, match="digest mismatch"):
            published.segmentation_dir(folder=copy)
    f = copy / mf["models"][mf["single"]]["file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(published.PublishedModelError, match=r"checksum mismatch.*git checkout -- ") as e:
        published._checked_file(copy, mf["models"][mf["single"]], mf["single"])
    assert "results/" not in str(e.value)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickled_hybrid_is_never_loaded(tmp_path):
    from tumorlens.evaluation.ensembles import HybridFileError, load_pipeline

    marker = tmp_path / "code ran"
    f = tmp_path / "hybrid_lr.joblib"
    f.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(HybridFileError, match="never loaded"):
        load_pipeline(f)
    assert not marker.exists()


# 8. start-up ------------------------------------------------------------------------------------------------
def test_parsing_the_command_line_imports_no_stage():
    code = (
        "import sys\n"
        "from tumorlens.cli import PLAN_PARTS, build_parser\n"
        "build_parser().format_help()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'tensorflow', 'keras', 'cv2', 'PIL'))\n"
        "print(heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout
    from tumorlens.cli import PLAN_PARTS
    from tumorlens.experiments.jobs import PLAN_PARTS as jobs_parts

    assert tuple(PLAN_PARTS) == tuple(jobs_parts)


def test_the_readme_reports_the_measured_guard_rates():
    import re

    rec = json.loads((REPO / "benchmarks" / "results" / "guard_cpu.json").read_text())
    readme = (REPO / "README.md").read_text()
    for label, key in (("Kaggle validation", "validation"), ("Kaggle Testing", "Testing"), ("BRISC 2025 dev", None)):
        m = rec["false_alarms"][key] if key else next(v for k, v in rec["false_alarms"].items() if "brisc" in k)
        row = re.search(rf"^\| {re.escape(label)}[^|]*\| ([\d,]+) \| ([\d.]+)% \|", readme, re.M)
        assert row, label
        assert int(row.group(1).replace(",", "")) == m["n"] and float(row.group(2)) == round(100 * m["flagged"], 1)
    for label, key in (("uniform noise", "uniform noise"), ("Testing with contrast inverted", "inverted Testing")):
        row = re.search(rf"^\| {re.escape(label)}[^|]*\| ([\d,]+) \| ([\d.]+)% \|", readme, re.M)
        assert row and float(row.group(2)) == round(100 * rec["catch"][key]["flagged"], 1), label


def _add_entries(path: str, who: str, n: int) -> None:
    import time as _time

    from tumorlens.utils.files import updating

    go = Path(path).with_name("go")
    while not go.exists():  # both start together
        _time.sleep(0.001)
    for i in range(n):
        with updating(path):
            p = Path(path)
            d = json.loads(p.read_text()) if p.is_file() else {}
            _time.sleep(0.002)  # widen the read-write window
            d[f"{who}{i}"] = i
            p.write_text(json.dumps(d))


def test_records_updated_by_two_processes_at_once_keep_both_entries(tmp_path):
    """`updating` (lesion.json, manifest.json): two processes merging into one record lose nothing."""
    import multiprocessing as mp

    f = tmp_path / "record.json"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_entries, args=(str(f), w, 25)) for w in ("a", "b")]
    for p in procs:
        p.start()
    import time

    time.sleep(3)  # both imported and waiting
    (tmp_path / "go").touch()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(json.loads(f.read_text())) == 50
    assert not any(p.name == "record.json.lock" for p in tmp_path.iterdir())  # the lock file is hidden
