"""Fuzz `tumorlens predict` with a fixed corpus (seeded, so every run sees the same inputs): hostile file and
folder names, pixel values and DICOM tags. Whatever the input: nothing is written outside --out, every
input file has exactly one row (predictions.csv or problems.csv), and the command exits 0 or 2."""

from __future__ import annotations

import csv
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorlens.data.phantoms import render_phantom

#: Characters file names may hold on POSIX (everything but "/" and NUL), the awkward ones first.
_AWKWARD = [
    "\n",
    "\t",
    "\r",
    " ",
    "\\",
    ":",
    "*",
    "?",
    '"',
    "<",
    ">",
    "|",
    "\x01",
    "\x7f",
    "-",
    ".",
    "~",
    "%",
    "é",
    "É",
]
_AWKWARD += ["e\u0301", "ß", "ǅ", "\u202e", "\u200b", "日", "🧠", "ﬁ", ",", ";", "'", "$", "#", "&"]


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random stems of 1-60 characters from awkward and plain ones; some end up 200+ bytes."""
    plain = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    out = []
    for i in range(n):
        k = int(rng.integers(1, 60)) if i % 7 else int(rng.integers(110, 240))  # every 7th a very long one
        chars = [str(rng.choice(_AWKWARD)) if rng.random() < 0.4 else str(rng.choice(plain)) for _ in range(k)]
        name = "".join(chars)
        while len((name + ".png").encode()) > 250:
            name = name[:-1]
        out.append(name)
    return out


def _image(rng: np.random.Generator, i: int) -> np.ndarray:
    size = int(rng.integers(32, 96))
    kind = i % 4
    if kind == 0:
        return render_phantom(("glioma", "meningioma", "notumor", "pituitary")[i % 4], size, i)[0]
    if kind == 1:
        return rng.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)
    if kind == 2:
        return np.full((size, size), int(rng.integers(0, 256)), np.uint8)
    return (rng.random((size, size)) ** 3 * 255).astype(np.uint8)


def _dicom(path: Path, pixels: np.ndarray, **tags) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
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
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(str(path), enforce_file_format=True)


#: DICOM tag sets: usable and broken ones (a zero or NaN slope, a NaN or zero window, tiny colour, ...).
DICOM_TAGS = [
    {},
    {"RescaleSlope": 0, "RescaleIntercept": 0},
    {"RescaleSlope": "NaN", "RescaleIntercept": 0},
    {"RescaleSlope": 1, "RescaleIntercept": "inf"},
    {"WindowCenter": "NaN", "WindowWidth": 400},
    {"WindowCenter": 500, "WindowWidth": 0},
    {"WindowCenter": 500, "WindowWidth": -10},
    {"WindowCenter": 500, "WindowWidth": 1000},
    {"PhotometricInterpretation": "MONOCHROME1"},
    {"PhotometricInterpretation": None},
    {"PhotometricInterpretation": "HSV"},
]


def _corpus(root: Path) -> list[Path]:
    """Write the corpus under ``root``; returns every input file (what each must get a row for)."""
    pytest.importorskip("pydicom")
    rng = np.random.default_rng(36)
    root.mkdir(parents=True)
    files: list[Path] = []

    def put(rel: str, write) -> None:
        p = root / rel
        if p in files:  # a random name drawn twice
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        write(p)
        files.append(p)

    def png(a):
        return lambda p: Image.fromarray(a).save(p, format="PNG")

    for i, stem in enumerate(_names(rng, 40)):  # random hostile names
        put(f"{stem}.png", png(_image(rng, i)))
    fixed = ["..", "...", " ", "-rf", "INCOMPLETE", "predictions", ".tumorlens-predict.lock", "x", "X"]
    fixed += [unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café"), "a" * 236]
    for stem in fixed:  # names built to collide, climb or hide
        put(f"{stem}.png", png(_image(rng, 0)))
    for folder in ("predictions.csv", "INCOMPLETE", "...", "x.json", "é" * 100, "/".join("deep" for _ in range(12))):
        put(f"{folder}/x.png", png(_image(rng, 0)))
    put(".hidden/inside.png", png(_image(rng, 0)))

    def float_tiff(values):
        return lambda p: Image.fromarray(np.asarray(values, np.float32), mode="F").save(p, format="TIFF")

    base = rng.random((40, 40)).astype(np.float32) * 1000
    for name, a in {
        "nan_part": np.where(np.arange(40)[:, None] < 10, np.nan, base),
        "nan_all": np.full((40, 40), np.nan),
        "inf_part": np.where(base > 900, np.inf, base),
        "neg_inf": np.where(base > 900, -np.inf, base),
        "huge": base * 1e35,
        "constant": np.full((40, 40), 3.5),
    }.items():
        put(f"pixels/{name}.tif", float_tiff(a))
    for name, a in {
        "black": np.zeros((50, 50), np.uint8),
        "white": np.full((50, 50), 255, np.uint8),
        "tiny15": np.full((15, 15), 99, np.uint8),
        "edge16": rng.integers(0, 256, (16, 16), dtype=np.uint8),
        "thin": np.full((16, 900), 128, np.uint8),
        "sixteen": (np.arange(48 * 48).reshape(48, 48) * 28).astype(np.uint16),
    }.items():
        put(f"pixels/{name}.png", png(a))
    phantom = render_phantom("meningioma", 48, 3)[0]
    mono = (phantom[..., 0] if phantom.ndim == 3 else phantom).astype(np.uint16) * 4
    for i, tags in enumerate(DICOM_TAGS):
        put(f"dicom/tags{i}.dcm", lambda p, t=tags: _dicom(p, mono, **t))
    put("dicom/rgb1x1.dcm", lambda p: _dicom(p, np.full((1, 1, 3), 200, np.uint8)))
    put("dicom/rgb_ok.dcm", lambda p: _dicom(p, np.full((20, 24, 3), 90, np.uint8)))
    put("dicom/mono1x1.dcm", lambda p: _dicom(p, np.full((1, 1), 7, np.uint16)))
    put("dicom/noextension", lambda p: _dicom(p, mono))
    put("junk/empty.png", lambda p: p.write_bytes(b""))
    put("junk/text.png", lambda p: p.write_text("not an image"))
    put("junk/notes.txt", lambda p: p.write_text("not an image either"))
    return files


def _tree(root: Path, skip: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
        if p != skip and skip not in p.parents
    }


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tumorlens.models.classifier import build_classifier

    d = tmp_path_factory.mktemp("fuzzmodel")
    build_classifier("mobilenetv2", (), image_size=32, weights="none").save(d / "model.keras")
    return d


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # the corpus writes broken tags on purpose
def test_fuzzed_names_pixels_and_dicom_tags_get_one_row_each_inside_out(tmp_path, model_dir, monkeypatch, capsys):
    from tumorlens.cli import main
    from tumorlens.experiments.predict import INCOMPLETE, LOCK_FILE

    work = tmp_path / "work"
    files = _corpus(work / "scans")
    (work / "scans" / "linked").symlink_to(work / "scans" / "dicom", target_is_directory=True)
    out = work / "out"
    before = _tree(tmp_path, out)
    monkeypatch.chdir(work / "scans" / "deep")  # inputs named upwards, as ".."
    args = ["predict", "..", "--model", str(model_dir), "--out", str(out), "--quiet", "--segment"]
    assert main(args) == 0
    assert _tree(tmp_path, out) == before, "nothing written or changed outside --out"
    for p in out.rglob("*"):
        assert p.resolve().is_relative_to(out.resolve()) and len(p.name.encode()) <= 255
    inputs = [os.path.normpath(Path.cwd() / r["input"]) for r in _rows(out / "predictions.csv")]
    problems = {os.path.normpath(Path.cwd() / r["path"]): r["reason"] for r in _rows(out / "problems.csv")}
    scans = work / "scans"
    expected = {str(scans / "linked")}
    for f in files:  # a hidden entry (a name starting with ".") stands for what it holds
        parts = f.relative_to(scans).parts
        cut = next((i for i, part in enumerate(parts) if part.startswith(".")), len(parts) - 1)
        expected.add(str(scans.joinpath(*parts[: cut + 1])))
    assert len(inputs) + len(problems) == len(expected), "each input exactly one row"
    assert set(inputs) | set(problems) == expected
    assert "hidden folder" in problems[str(scans / ".hidden")] and "hidden folder" in problems[str(scans / "...")]
    assert "symbolic link to a folder" in problems[str(scans / "linked")]
    assert "RescaleSlope 0.0" in problems[str(scans / "dicom" / "tags1.dcm")]
    assert "no finite pixel" in problems[str(scans / "pixels" / "nan_all.tif")]
    guard = {os.path.normpath(Path.cwd() / r["input"]): r["guard"] for r in _rows(out / "predictions.csv")}
    for name in ("nan_part.tif", "inf_part.tif", "black.png", "white.png", "constant.tif"):
        assert guard[str(scans / "pixels" / name)] == "warning", name
    outputs = [r["output"] for r in _rows(out / "predictions.csv")]
    assert len({o.casefold() for o in outputs}) == len(outputs) and all((out / o).is_file() for o in outputs)
    assert not (out / INCOMPLETE).exists() and not (out / LOCK_FILE).exists()
    # again into the same --out: refused (2) without --overwrite, then the same rows with it
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    assert sorted(os.path.normpath(Path.cwd() / r["input"]) for r in _rows(out / "predictions.csv")) == sorted(inputs)
    assert _tree(tmp_path, out) == before
    err = capsys.readouterr().err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "audit", "{root}", "--correlation", "nan"],
        ["data", "audit", "{root}", "--correlation", "inf"],
        ["data", "audit", "{root}", "--correlation", "0"],
        ["data", "audit", "{root}", "--correlation", "1e309"],
        ["data", "audit", "{root}", "--hash-distance", "-1"],
        ["data", "audit", "{root}", "--hash-distance", "1.5"],
        ["data", "phantoms", "{root}/ph", "--size", "0"],
        ["data", "phantoms", "{root}/ph", "--duplicates", "-3"],
        ["models", "--image-size", "-224"],
        ["run", "--profile", "smoke", "--workers", "0"],
        ["run", "--profile", "smoke", "--part", "everything"],
        ["predict"],
        ["predict", "{root}", "--ensemble", "published", "--model", "{root}", "--out", "{root}/o"],
        ["predict", "{root}", "--ensemble", "{root}", "--out", "{root}/o"],
        ["data", "scan", "{root}/nowhere"],
        ["config", "show", "--profile", "no-such-profile"],
    ],
)
def test_bad_options_exit_2(argv, tmp_path, capsys):
    from tumorlens.cli import main

    argv = [a.replace("{root}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("error:" in err)
