import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from tumorlens.data.inventory import scan
from tumorlens.data.io import letterbox, read_image
from tumorlens.data.pipeline import augmentation, load_images, make_dataset
from tumorlens.data.splits import labels_of, make_splits
from tumorlens.errors import BadImageError, DatasetNotFoundError
from tumorlens.models.layers import normalise


def _jpeg_bytes(size=(40, 30), value=128):
    ok, buf = cv2.imencode(".jpg", np.full((size[1], size[0]), value, np.uint8) + np.arange(size[0], dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def fuzz_root(tmp_path, phantom_root):
    """A Kaggle-layout folder holding good phantoms plus one of each kind of bad input."""
    root = tmp_path / "fuzz"
    shutil.copytree(phantom_root, root, ignore=shutil.ignore_patterns("masks", "phantoms.json"))
    g = root / "Training" / "glioma"
    (g / "zero.jpg").write_bytes(b"")
    (g / "truncated.jpg").write_bytes(_jpeg_bytes((200, 200))[:300])
    (g / "text.jpg").write_text("this is not an image\n")
    (g / "tiny.png").write_bytes(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())
    Image.new("L", (9000, 8000)).save(g / "huge.png")
    cv2.imwrite(str(g / "sixteen.png"), (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16))
    Image.new("CMYK", (48, 48), (10, 200, 30, 0)).save(g / "cmyk.jpg")
    (g / "notes.txt").write_text("annotations")
    (root / "Training" / "astrocytoma").mkdir()
    (root / "Training" / "astrocytoma" / "a.jpg").write_bytes(_jpeg_bytes())
    (root / "Training" / "stray.jpg").write_bytes(_jpeg_bytes())
    shutil.rmtree(root / "Testing" / "pituitary")
    (root / "Testing" / "pituitary").mkdir()
    return root


BAD = {
    "zero.jpg": "empty file",
    "truncated.jpg": "truncated",
    "text.jpg": "not an image",
    "tiny.png": "too small",
    "huge.png": "too large",
}


def test_fuzzed_folder_scans_and_names_each_bad_file_once(fuzz_root):
    report = scan(fuzz_root, show_progress=False)
    bad = {b["path"].split("/")[-1]: b["reason"] for b in report.bad}
    assert len(report.bad) == len(BAD) and set(bad) == set(BAD)
    for name, words in BAD.items():
        assert words in bad[name], (name, bad[name])
    conv = {c["path"].split("/")[-1]: c["note"] for c in report.converted}
    assert "16-bit" in conv["sixteen.png"] and "CMYK" in conv["cmyk.jpg"]
    counts = report.counts()
    assert counts["Training"]["glioma"] == 12 + 2  # the two converted files are kept
    assert counts["Testing"]["pituitary"] == 0
    assert any("astrocytoma" in w and "unknown class folder" in w for w in report.warnings)
    assert any("Testing/pituitary: no images" in w for w in report.warnings)
    ignored = {i["path"] for i in report.ignored}
    assert "Training/glioma/notes.txt" in ignored and "Training/stray.jpg" in ignored
    text = report.summary()
    for name in BAD:
        assert text.count(name) == 1


def test_cli_scan_json_on_fuzzed_folder(fuzz_root):
    out = subprocess.run(
        [sys.executable, "-m", "tumorlens.cli", "data", "scan", str(fuzz_root), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(out.stdout)
    assert d["n_bad"] == len(BAD) and d["counts"]["Training"]["total"] == 4 * 12 + 2


def test_cli_audit_writes_the_record_and_the_dedup_list(phantom_root, tmp_path):
    """`tumorlens data audit ROOT --out DIR` (a step of the Colab walkthrough, whose whole run is in the full
    tier): the phantoms' planted copies found, audit.json and the de-duplicated Testing list written."""
    import csv

    from tumorlens.cli import main

    assert main(["data", "audit", str(phantom_root), "--out", str(tmp_path / "audit"), "--quiet"]) == 0
    rec = json.loads((tmp_path / "audit" / "audit.json").read_text())
    total = rec["testing_vs_training"]["total"]
    assert rec["schema"]["name"] == "audit" and rec["n_images"] == 4 * (12 + 4)
    assert total["any_in_training"] == 4 and total["dedup_kept"] == rec["dedup_test_size"] == 12  # duplicates=4
    with open(tmp_path / "audit" / "dedup_test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(r["path"].startswith("Testing/") for r in rows)


def test_missing_and_empty_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="make data"):
        scan(tmp_path / "nowhere", show_progress=False)
    (tmp_path / "empty" / "Training" / "glioma").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        scan(tmp_path / "empty", show_progress=False)
    out = subprocess.run(
        [sys.executable, "-m", "tumorlens.cli", "data", "scan", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "dataset folder not found" in out.stderr and "Traceback" not in out.stderr


def test_folder_layout_and_class_aliases(tmp_path):
    for cls in ("glioma", "meningioma", "no_tumor", "pituitary"):
        (tmp_path / cls).mkdir()
        cv2.imwrite(str(tmp_path / cls / "a.png"), np.full((40, 40), 100, np.uint8))
    report = scan(tmp_path, show_progress=False)
    assert report.layout == "folder" and report.counts()["all"]["notumor"] == 1


def test_read_image_grayscale_to_three_channels_and_errors(tmp_path):
    p = tmp_path / "g.png"
    cv2.imwrite(str(p), np.arange(50 * 40, dtype=np.uint8).reshape(50, 40))
    arr, note = read_image(p)
    assert arr.shape == (50, 40, 3) and arr.dtype == np.uint8 and note is None
    assert np.array_equal(arr[..., 0], arr[..., 2])
    with pytest.raises(BadImageError, match="g2.png.*cannot read"):
        read_image(tmp_path / "g2.png")


def test_letterbox_keeps_aspect_ratio():
    img = np.full((100, 50, 3), 200, np.uint8)
    out = letterbox(img, 64)
    assert out.shape == (64, 64, 3)
    cols = np.nonzero(out[32, :, 0])[0]
    assert 31 <= len(cols) <= 33 and out[:, 0].max() == 0  # 50/100 * 64 wide, padded left and right
    assert out[0, 32, 0] == 200  # full height used
    assert letterbox(np.zeros((64, 64, 3), np.uint8), 64).shape == (64, 64, 3)


def test_normalise_modes():
    x = np.array([[0.0, 127.5, 255.0]], np.float32)
    assert np.allclose(normalise(x, "tf"), [[-1, 0, 1]])
    assert np.allclose(normalise(x, "unit"), [[0, 0.5, 1]])
    assert np.allclose(normalise(x, "raw"), x)
    assert np.allclose(normalise(x, "caffe"), [[255 - 103.939, 127.5 - 116.779, 0 - 123.68]])
    with pytest.raises(ValueError, match="'bogus'"):
        normalise(x, "bogus")


def test_splits_official_paper_grouped(phantom_root):
    report = scan(phantom_root, show_progress=False)
    off = make_splits(report, "official", seed=1, val_fraction=0.25)
    assert {r.split for r in off["train"] + off["val"]} == {"Training"}
    assert {r.split for r in off["test"]} == {"Testing"}
    assert len(off["val"]) == 12 and np.bincount(labels_of(off["val"]), minlength=4).tolist() == [3, 3, 3, 3]
    again = make_splits(report, "official", seed=1, val_fraction=0.25)
    assert [r.rel for r in again["val"]] == [r.rel for r in off["val"]]
    paper = make_splits(report, "paper", seed=1)
    sizes = {k: len(v) for k, v in paper.items()}
    assert sum(sizes.values()) == len(report.records) and sizes["val"] + sizes["test"] == 13
    assert abs(sizes["val"] - sizes["test"]) <= 1
    names = [set(r.rel for r in v) for v in paper.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    # grouped: a group never straddles splits
    groups = {r.rel: i // 2 for i, r in enumerate(report.records)}
    gs = make_splits(report, "grouped", seed=1, groups=groups)
    where = {groups[r.rel]: k for k, v in gs.items() for r in v}
    for k, v in gs.items():
        assert all(where[groups[r.rel]] == k for r in v)


def test_load_images_is_cached_and_shaped(phantom_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORLENS_CACHE", str(tmp_path / "cache"))
    report = scan(phantom_root, show_progress=False)
    recs = report.records[:10]
    a = load_images(recs, 48, show_progress=False)
    assert a.shape == (10, 48, 48, 3) and a.dtype == np.uint8
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached set must not be decoded again")

    monkeypatch.setattr("tumorlens.data.pipeline.read_image", no_decoding)
    b = load_images(recs, 48, show_progress=False)  # a cache hit, or the patched decoder raises
    assert np.array_equal(a, b)
    with pytest.raises(AssertionError, match="decoded again"):
        load_images(recs, 40, show_progress=False)  # another size is another key: decoded


def test_pipeline_augments_train_only():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8) % 4
    aug = augmentation(rotation=0.3, zoom=0.2, translation=0.1, contrast=0.3, seed=1)
    test = [b for b, _ in make_dataset(x, y, batch_size=8, augment=aug)]
    again = [b for b, _ in make_dataset(x, y, batch_size=8, augment=aug)]
    assert np.allclose(test[0].numpy(), x) and np.allclose(again[0].numpy(), test[0].numpy())
    train = next(iter(make_dataset(x, y, batch_size=8, training=True, augment=aug, seed=3)))
    xb = train[0].numpy()
    assert xb.shape == (8, 32, 32, 3) and 0 <= xb.min() and xb.max() <= 255
    assert sorted(train[1].numpy().tolist()) == sorted(y.tolist())
    # augmented images differ from every original (shuffled order notwithstanding)
    assert min(np.abs(xb[i] - x[j]).mean() for i in range(8) for j in range(8)) > 0.005 * 255


def test_scan_names_broken_symlinks_and_keeps_the_rest(tmp_path):
    for split in ("Training", "Testing"):
        for i, cls in enumerate(("glioma", "notumor")):
            (tmp_path / split / cls).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / split / cls / f"{split}_{cls}.png"), np.full((32, 32), 60 + 40 * i, np.uint8))
    folder = tmp_path / "Training" / "glioma"
    (folder / "dangling.png").symlink_to("nowhere.png")
    (folder / "loop.png").symlink_to("loop.png")
    report = scan(tmp_path)
    assert len(report.records) == 4
    reasons = {b["path"]: b["reason"] for b in report.ignored}
    assert reasons["Training/glioma/dangling.png"].startswith("broken symbolic link")
    assert reasons["Training/glioma/loop.png"].startswith("broken symbolic link")


def test_a_scan_json_from_another_version_fails_naming_itself(tmp_path):
    from tumorlens.data.inventory import read_scan_json
    from tumorlens.utils.files import write_json
    from tumorlens.utils.schema import SchemaError

    ident = {"name": "x", "n_images": 3, "fingerprint": "0"}
    good = {
        "dataset": ident,
        "layout": "folder",
        "n_images": 3,
        "counts": {},
        "channels": {"single-channel": 2, "rgb-gray": 1},
        "n_bad": 0,
        "bad": [],
    }
    write_json(tmp_path / "scan.json", good, schema="scan")
    assert read_scan_json(tmp_path / "scan.json")["channels"]["single-channel"] == 2
    write_json(tmp_path / "old.json", {**good, "channels": {"gray": 2, "rgb": 1}}, schema="scan")
    with pytest.raises(SchemaError, match=r"old.json: written by another version.*\['gray', 'rgb'\]"):
        read_scan_json(tmp_path / "old.json")
    (tmp_path / "unversioned.json").write_text(json.dumps(good))  # as written before schema versions
    with pytest.raises(SchemaError, match=r"unversioned.json: expected a 'scan' results file.*no schema"):
        read_scan_json(tmp_path / "unversioned.json")


def test_the_dataset_is_named_by_a_fingerprint_of_its_files_not_by_where_it_lies(tmp_path):
    from tumorlens.data.prepared import DATA_FILES

    a, b = tmp_path / "one" / "kaggle", tmp_path / "two" / "kaggle"
    for root in (a, b):
        for split in ("Training", "Testing"):
            for i, cls in enumerate(("glioma", "notumor")):
                (root / split / cls).mkdir(parents=True)
                Image.fromarray(np.full((20, 20), 40 * (i + 1), np.uint8)).save(root / split / cls / f"{cls}.png")
    ra, rb = scan(a, use_cache=False), scan(b, use_cache=False)
    assert ra.dataset() == rb.dataset() and ra.dataset()["name"] == "kaggle"
    assert str(tmp_path) not in json.dumps(ra.to_dict())  # no folder of this machine in what is published
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(b / "Training" / "glioma" / "extra.png")
    assert scan(b, use_cache=False).dataset()["fingerprint"] != ra.dataset()["fingerprint"]
    assert DATA_FILES == ("scan.json", "audit.json", "dedup_test.csv", "splits.json")


def test_the_data_step_record_is_written_versioned_and_read_back_strictly(tmp_path, phantom_root):
    from tumorlens.config import load_config
    from tumorlens.data import prepare
    from tumorlens.data.prepared import read_data_step, write_data_step
    from tumorlens.utils.schema import SchemaError

    cfg = load_config("smoke", overrides={"data.root": str(phantom_root)})
    prep = prepare(cfg, show_progress=False)
    write_data_step(prep, cfg.data.split, tmp_path)
    step = read_data_step(tmp_path)
    assert step["scan"]["n_images"] == len(prep.report.records)
    assert step["scan"]["dataset"] == step["audit"]["dataset"] == prep.report.dataset()
    assert len(step["dedup_test"]) == len(prep.dedup_test)
    d = json.loads((tmp_path / "audit.json").read_text())
    del d["examples"]  # a partial file: a reader must not fill the gap with a default
    (tmp_path / "audit.json").write_text(json.dumps(d))
    with pytest.raises(SchemaError, match=r"audit.json: a partial 'audit' results file \(missing \['examples'\]\)"):
        read_data_step(tmp_path)
    (tmp_path / "splits.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"\['splits.json'\] are missing"):
        read_data_step(tmp_path)


def test_random_intensity_remaps_within_range_keeps_background_and_grey_and_round_trips(tmp_path):
    import keras

    from tumorlens.data.intensity import RandomIntensity
    from tumorlens.data.pipeline import augmentation, make_dataset

    rng = np.random.default_rng(0)
    x = np.zeros((4, 32, 32, 3), np.float32)
    x[:, 8:24, 8:24] = rng.uniform(20, 235, (4, 16, 16, 1))  # a grey "head" on black
    off = RandomIntensity(seed=1)
    assert np.array_equal(np.asarray(off(x, training=True)), x)  # every strength 0: the identity
    on = RandomIntensity(gamma=0.5, bias_field=0.5, seed=1)
    assert np.array_equal(np.asarray(on(x, training=False)), x)  # inference: the identity
    y = np.asarray(on(x, training=True))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 255
    assert np.array_equal(y[:, :8], x[:, :8]) and not np.allclose(y, x)  # black stays black, the head changes
    assert np.array_equal(y[..., 0], y[..., 2])  # grey stays grey
    # a monotone remap per image: the order of pixel values inside the head is kept (gamma alone)
    g = np.asarray(RandomIntensity(gamma=0.5, seed=2)(x, training=True))[0, 8:24, 8:24, 0].ravel()
    order = np.argsort(x[0, 8:24, 8:24, 0].ravel(), kind="stable")
    assert np.all(np.diff(g[order]) >= -1e-3)
    noisy = np.asarray(RandomIntensity(noise=0.05, seed=3)(x, training=True))
    assert 0 < np.abs(noisy - x)[:, 8:24, 8:24].mean() < 0.1 * 255
    again = np.asarray(RandomIntensity(gamma=0.5, bias_field=0.5, seed=1)(x, training=True))
    assert np.array_equal(again, y)  # the seed fixes the draws
    with pytest.raises(ValueError, match="gamma=-1"):
        RandomIntensity(gamma=-1)
    # serialisable like every custom layer, and usable inside the tf.data pipeline
    from tumorlens.config import load_config
    from tumorlens.training.prefix_cache import augmentation_for

    a = load_config("smoke", overrides={"augment.gamma": 0.3, "augment.noise": 0.01}).augment
    assert [layer.name for layer in augmentation_for(a, 4).layers][-1] == "aug_intensity"
    assert "aug_intensity" not in [layer.name for layer in augmentation_for(load_config("smoke").augment, 4).layers]
    block = augmentation(0, 0, 0, 0, seed=4, extra=[RandomIntensity(gamma=0.3, noise=0.01, seed=4)])
    assert len(block.layers) == 1
    model = keras.Sequential([keras.Input((32, 32, 3)), RandomIntensity(gamma=0.3, bias_field=0.2, noise=0.01)])
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert back.layers[-1].get_config() == model.layers[-1].get_config()
    ds = make_dataset(x.astype(np.uint8), np.zeros(4, int), batch_size=2, training=True, augment=block, seed=0)
    batch, _ = next(iter(ds))
    assert batch.shape == (2, 32, 32, 3) and 0 <= float(np.min(batch)) and float(np.max(batch)) <= 255


def test_contrast_inversion_reverses_the_order_inside_the_head_and_keeps_the_background_black(tmp_path):
    """`RandomIntensity(invert=p)`: with p = 1 every image is inverted inside the head (bright fluid
    becomes dark), at the image's own mean brightness there, the background stays black; p = 0 leaves
    images alone; a bad probability is an error naming it; the setting survives a .keras round trip."""
    import keras

    from tumorlens.config import load_config
    from tumorlens.data.intensity import RandomIntensity
    from tumorlens.training.prefix_cache import augmentation_for

    x = np.zeros((2, 32, 32, 3), np.float32)
    x[:, 8:24, 8:24] = 60.0  # grey tissue ...
    x[:, 12:16, 12:16] = 220.0  # ... with bright fluid
    y = np.asarray(RandomIntensity(invert=1.0, seed=1)(x, training=True))
    assert np.array_equal(y[:, :8], x[:, :8])  # black stays black
    assert (y[:, 13, 13] < y[:, 20, 20]).all()  # the fluid is now darker than the tissue
    head = x[..., 0] > 0
    assert np.allclose(y[..., 0][head].mean(), x[..., 0][head].mean(), rtol=0.05)  # the same mean brightness
    assert np.array_equal(y[..., 0], y[..., 2]) and 0 <= y.min() and y.max() <= 255
    assert np.array_equal(np.asarray(RandomIntensity(invert=0.0, gamma=0.0)(x, training=True)), x)
    some = np.asarray(RandomIntensity(invert=0.5, seed=3)(np.repeat(x, 16, 0), training=True))
    flipped = (some[:, 13, 13, 0] < some[:, 20, 20, 0]).sum()
    assert 0 < flipped < 32  # about half of the images
    with pytest.raises(ValueError, match="invert=1.5"):
        RandomIntensity(invert=1.5)
    a = load_config("smoke", overrides={"augment.invert": 0.5}).augment
    assert [layer.name for layer in augmentation_for(a, 4).layers][-1] == "aug_intensity"
    model = keras.Sequential([keras.Input((32, 32, 3)), RandomIntensity(invert=0.5)])
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").layers[-1].get_config()["invert"] == 0.5


def test_the_view_labels_are_checked_and_their_mix_has_intervals(tmp_path):
    import csv

    import cv2

    from tumorlens.book.snapshots import write_view_figure
    from tumorlens.data.annotations import read_view_labels, view_sequence_mix, wilson
    from tumorlens.data.phantoms import render_phantom

    rows = read_view_labels()  # the committed sample: 24 Training images per class
    assert len(rows) == 96 and all(r["file"].startswith(f"Training/{r['class']}/") for r in rows)
    mix = view_sequence_mix(rows)
    for m in mix.values():
        assert m["n"] == 24 and sum(d["k"] for d in m["view"].values()) == 24
        assert sum(d["k"] for d in m["sequence"].values()) == 24
        for d in [*m["view"].values(), *m["sequence"].values()]:
            assert 0 <= d["lo"] <= d["share"] <= d["hi"] <= 1
    from tumorlens.book.text import view_mix_glue

    words = view_mix_glue(mix)
    assert words["mix_nt_axial"] == f"{mix['notumor']['view']['axial']['k']} of 24"
    assert words["mix_tumour_t1"].endswith(" of 72")
    lo, hi = wilson(0, 10)
    assert lo == 0 and 0.25 < hi < 0.35  # the known Wilson bound for 0 of 10: 0.278
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # a bad value or a repeated file names the file and the line
    bad = tmp_path / "labels.csv"
    with open(bad, "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["class", "file", "view", "sequence"], ["glioma", "a.jpg", "axial", "T1"]])
        w.writerows([["glioma", "b.jpg", "oblique", "T1"]])
    with pytest.raises(ValueError, match=r"labels.csv, line 3: view must be one of .*'oblique'"):
        read_view_labels(bad)
    bad.write_text("class,file,view,sequence\nglioma,a.jpg,axial,T1\nglioma,a.jpg,axial,T1\n")
    with pytest.raises(ValueError, match="line 3: a.jpg is labelled twice"):
        read_view_labels(bad)
    # the example sheet: the labelled files that exist, one per view and sequence pair
    root = tmp_path / "kaggle"
    for r in rows[:3]:
        (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / r["file"]), render_phantom("glioma", 96, 0)[0])
    sheet = write_view_figure(root, rows, tmp_path / "views.jpg")
    assert sheet is not None and cv2.imread(str(sheet)) is not None
    assert write_view_figure(tmp_path / "empty", rows, tmp_path / "none.jpg") is None
