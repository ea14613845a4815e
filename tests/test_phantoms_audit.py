import numpy as np
import pytest

from tumorlens.config import CLASSES
from tumorlens.data.inventory import scan
from tumorlens.data.leakage import audit, dedup_subset
from tumorlens.data.phantoms import render_phantom, write_phantoms


def test_render_is_deterministic_and_masks_follow_the_class():
    for cls in CLASSES:
        a, m = render_phantom(cls, 64, 3)
        b, m2 = render_phantom(cls, 64, 3)
        assert a.shape == m.shape == (64, 64) and a.dtype == m.dtype == np.uint8
        assert np.array_equal(a, b) and np.array_equal(m, m2)
        assert m.any() if cls != "notumor" else not m.any()
    assert not np.array_equal(render_phantom("glioma", 64, 3)[0], render_phantom("glioma", 64, 4)[0])
    with pytest.raises(ValueError, match="'astro'"):
        render_phantom("astro", 64, 1)


def test_lesions_sit_where_the_class_says():
    for seed in range(5):
        img, m = render_phantom("pituitary", 128, seed)
        ys, xs = np.nonzero(m)
        assert 0.5 < ys.mean() / 128 < 0.85 and abs(xs.mean() / 128 - 0.5) < 0.15  # midline, below centre
        assert (m > 0).sum() < 0.02 * m.size  # small
        img, m = render_phantom("meningioma", 128, seed)
        ys, xs = np.nonzero(m)
        r = np.hypot(ys.mean() / 64 - 1, xs.mean() / 64 - 1)
        assert r > 0.35  # peripheral (extra-axial)
        assert img[m > 0].mean() > img[(m == 0) & (img > 20)].mean()  # brighter than the brain


def test_write_phantoms_layout_and_reuse(tmp_path):
    ps = write_phantoms(tmp_path, size=48, train_per_class=3, test_per_class=2, duplicates=2, seed=1)
    assert len(list((tmp_path / "Training" / "glioma").glob("*.png"))) == 3
    assert len(list((tmp_path / "masks" / "Testing" / "notumor").glob("*.png"))) == 2
    assert [d["kind"] for d in ps.duplicates] == ["exact", "near"]
    mtime = (tmp_path / "phantoms.json").stat().st_mtime_ns
    write_phantoms(tmp_path, size=48, train_per_class=3, test_per_class=2, duplicates=2, seed=1)
    assert (tmp_path / "phantoms.json").stat().st_mtime_ns == mtime


def test_phantoms_being_written_elsewhere_are_waited_for_not_read_half_written(tmp_path):
    """Two grid jobs may ask for the same phantoms at once: the second waits for the first's lock and then
    reuses its complete set (before the lock, a training job read a PNG the data step was still writing)."""
    import threading
    import time

    import cv2

    from tumorlens.utils.files import key_lock

    out = tmp_path / "ph"
    holding, release = threading.Event(), threading.Event()

    def writer():  # another job busy writing the set: holds the folder's lock until released
        with key_lock(out):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert holding.wait(10)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    t0 = time.perf_counter()
    ps = write_phantoms(out, size=32, train_per_class=2, test_per_class=1, duplicates=0)
    assert time.perf_counter() - t0 >= 0.4  # it waited for the lock
    t.join()
    files = sorted(out.rglob("*.png"))
    assert len(files) == 2 * 2 * len(CLASSES) + 2 * len(CLASSES) and ps.root == out
    assert all(cv2.imread(str(f)) is not None for f in files)
    assert write_phantoms(out, size=32, train_per_class=2, test_per_class=1, duplicates=0).root == out


def test_audit_finds_the_planted_duplicates(phantom_root):
    import json

    planted = json.loads((phantom_root / "phantoms.json").read_text())["duplicates"]
    report = scan(phantom_root, show_progress=False)
    a = audit(report, show_progress=False)
    found = {(a.records[i].rel, a.records[j].rel): (k, c) for i, j, k, _, c in a.pairs}
    for d in planted:
        key = tuple(
            sorted((d["testing"], d["training"])),
        )
        key = key if key in found else key[::-1]
        assert key in found and found[key][0] == d["kind"], d
    d = a.to_dict()
    assert d["testing_vs_training"]["total"]["exact_in_training"] == 2
    # at the stricter rule, exactly the planted pairs cross Training/Testing
    strict = [s for s in d["sensitivity"] if s["rule"].startswith("hash <= 8")][0]
    assert strict["testing_with_copy_in_training"] == len(planted)
    kept = set(a.dedup_test())
    assert not kept & {p["testing"] for p in planted}
    assert len(kept) <= 16 - len(planted)


def test_dedup_subset_uses_direct_pairs_and_collapses_test_copies():
    nb = {"t1": {"s1"}, "s1": {"t1"}, "t2": {"t3"}, "t3": {"t2"}}
    assert dedup_subset(["t1", "t2", "t3", "t4"], ["s1", "s2"], nb) == ["t2", "t4"]


def test_real_data_scan_counts(real_data):
    d = scan(real_data, show_progress=False).to_dict()
    assert d["counts"]["Training"] == {
        "glioma": 1321,
        "meningioma": 1339,
        "notumor": 1591,
        "pituitary": 1457,
        "total": 5708,
    }
    assert d["counts"]["Testing"] == {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300, "total": 1311}
    assert d["n_bad"] == 0 and 3000 < d["channels"]["single-channel"] < 3200


@pytest.mark.slow
def test_real_data_audit_measures_the_overlap(real_data):
    a = audit(scan(real_data, show_progress=False), show_progress=False)
    t = a.to_dict()["testing_vs_training"]
    assert t["total"]["exact_in_training"] > 100  # the dataset's known byte-identical copies
    assert 0 < t["total"]["dedup_kept"] < t["total"]["testing"]
    assert t["per_class"]["notumor"]["any_in_training"] > t["per_class"]["glioma"]["any_in_training"]
