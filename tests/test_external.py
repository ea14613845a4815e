"""External validation: another release's class folders, read with bad files reported, scored per view."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tumorlens.config import CLASSES, ConfigError, load_config
from tumorlens.data.phantoms import render_phantom
from tumorlens.evaluation.external import load_external, score_external, view_of
from tumorlens.experiments.external import external_folders

REPO = Path(__file__).resolve().parents[1]


def test_views_come_from_brisc_file_names():
    assert view_of("brisc2025_test_00001_gl_ax_t1.jpg") == "axial"
    assert view_of("glioma/brisc2025_test_00003_me_co_t1.jpg") == "coronal"
    assert view_of("x_pi_sa_t1.png") == "sagittal"
    assert view_of("Te-gl_0001.jpg") == "unknown" and view_of("axial_slice.jpg") == "unknown"


def _external(root: Path, bad: bool = True) -> Path:
    codes = {"glioma": "gl", "meningioma": "me", "no_tumor": "no", "pituitary": "pi"}
    for folder, code in codes.items():
        (root / folder).mkdir(parents=True)
        for i, view in enumerate(("ax", "co", "sa")):
            cls = "notumor" if folder == "no_tumor" else folder
            cv2.imwrite(str(root / folder / f"set_{i:03d}_{code}_{view}_t1.png"), render_phantom(cls, 80, i)[0])
    if bad:
        (root / "glioma" / "broken_gl_ax_t1.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_an_external_folder_is_read_with_its_bad_files_reported_and_scored_per_view(tmp_path):
    ext = load_external(_external(tmp_path / "ext"), 64, show_progress=False)
    assert len(ext.y) == 12 and ext.images.shape == (12, 64, 64, 3)
    assert [b["path"] for b in ext.report.bad] == ["glioma/broken_gl_ax_t1.jpg"]
    assert sorted(set(ext.views)) == ["axial", "coronal", "sagittal"]
    probs = np.eye(4)[ext.y] * 0.9 + 0.025  # every image right ...
    no = CLASSES.index("notumor")
    wrong = [i for i, (v, y) in enumerate(zip(ext.views, ext.y)) if v == "coronal" and y == no]
    probs[wrong] = np.eye(4)[CLASSES.index("meningioma")] * 0.9 + 0.025  # ... but coronal no-tumour
    r = score_external(probs, ext, n_boot=200)
    assert r["n"] == 12 and r["n_bad"] == 1 and r["accuracy"] == pytest.approx(11 / 12)
    assert r["accuracy_lo"] <= r["accuracy"] <= r["accuracy_hi"]
    assert r["per_view"]["coronal"]["accuracy"] == pytest.approx(3 / 4)
    assert r["per_view"]["coronal"]["notumor_recall"] == 0.0 and r["per_view"]["axial"]["notumor_recall"] == 1.0
    assert r["notumor_recall"] == pytest.approx(2 / 3)
    assert np.array(r["metrics"]["confusion_matrix"]).sum() == 12
    with pytest.raises(ValueError, match=r"probs must be \(12, 4\)"):
        score_external(probs[:3], ext)


def test_an_unknown_class_folder_or_a_missing_folder_is_an_error_naming_it(tmp_path):
    root = _external(tmp_path / "ext", bad=False)
    (root / "astrocytoma").mkdir()
    cv2.imwrite(str(root / "astrocytoma" / "a.png"), render_phantom("glioma", 64, 0)[0])
    with pytest.raises(ValueError, match="astrocytoma"):
        load_external(root, 64, show_progress=False)
    cfg = load_config("cpu", overrides={"external.folders": [str(tmp_path / "nowhere")]})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        external_folders(cfg)
    with pytest.raises(ConfigError, match="external.folders"):
        load_config("cpu", overrides={"external.folders": "not-a-list"})
    assert external_folders(load_config("cpu", overrides={"external.folders": []})) == []
