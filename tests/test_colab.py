"""The Colab walkthrough is executed, not only read: on the smoke profile (phantoms), from this checkout."""

import json
from pathlib import Path

import cv2

from tumorlens.config import CLASSES
from tumorlens.experiments.runner import Job, execute

REPO = Path(__file__).resolve().parents[1]


def test_the_colab_walkthrough_runs_end_to_end_on_the_smoke_profile(tmp_path):
    out = tmp_path / "colab"
    job = Job(
        "colab_walkthrough",
        tmp_path / "run",
        {"PROFILE": "smoke", "REPO": str(REPO), "DATA_ROOT": "", "OUT": str(out), "N_SCANS": 2},
    )
    assert execute(job) == "ran"
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert 0.0 <= metrics["official"]["accuracy"] <= 1.0
    assert (out / "audit" / "audit.json").is_file()
    records = sorted((out / "predictions").glob("*.json"))
    assert len(records) == 2
    for rec in records:
        d = json.loads(rec.read_text())
        assert d["class"] in CLASSES and abs(sum(d["probabilities"].values()) - 1) < 1e-4
        overlay = cv2.imread(str(rec.with_name(rec.stem + "_cam.png")))
        mask = cv2.imread(str(rec.with_name(rec.stem + "_mask.png")), cv2.IMREAD_GRAYSCALE)
        assert overlay is not None and overlay.ndim == 3 and mask is not None and set(mask.ravel()) <= {0, 255}
    first = sorted((out / "published").glob("*.json"))  # the published model came first, without training
    assert len(first) == 2 and all(json.loads(r.read_text())["model"].startswith("published:") for r in first)
    shown = [o for c in json.loads(job.output.read_text())["cells"] for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in shown) == 2 + 4  # published mask; map and mask per scan
