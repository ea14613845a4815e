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


def test_every_run_is_scored_on_the_external_set_with_the_soft_vote_of_the_ensemble(tmp_path):
    """`score_runs`: each run's model on the external images (bad files reported, not scored), the soft
    vote of the ensemble's members, and an external set read at another size refused naming the run."""
    import keras

    from tumorlens.evaluation.ensembles import soft_vote
    from tumorlens.experiments.external import compact, score_runs
    from tumorlens.models.classifier import build_classifier
    from tumorlens.models.inference import predict_images

    root = _external(tmp_path / "ext")
    ext = load_external(root, 32, show_progress=False)
    runs, models = [], []
    for name, seed in (("efficientnet_lite0", 1), ("efficientnet_lite0+sbr", 2)):
        keras.utils.set_random_seed(seed)
        model = build_classifier(name.split("+")[0], name.split("+")[1:], image_size=32, weights="none")
        run = tmp_path / "runs" / name / f"seed-{seed}"
        run.mkdir(parents=True)
        model.save(run / "model.keras")
        runs.append(run)
        models.append(model)
    members = [{"name": "efficientnet_lite0+sbr/seed-2"}, {"name": "efficientnet_lite0/seed-1"}]
    per_run, systems = score_runs(runs, [ext], members=members, n_boot=50, show_progress=False)
    assert sorted(per_run) == ["efficientnet_lite0+sbr/seed-2", "efficientnet_lite0/seed-1"]
    probs = [predict_images(m, ext.images) for m in models]
    expect = compact(score_external(probs[0], ext, n_boot=50))
    got = per_run["efficientnet_lite0/seed-1"]["ext"]
    assert got["n"] == 12 and got["accuracy"] == pytest.approx(expect["accuracy"])
    assert set(got["per_view"]) == {"axial", "coronal", "sagittal"} and "bad" not in got
    vote = compact(score_external(soft_vote(probs), ext, n_boot=50))
    assert systems["soft voting"]["ext"]["accuracy"] == pytest.approx(vote["accuracy"])
    assert systems["single best"]["ext"] == per_run["efficientnet_lite0+sbr/seed-2"]["ext"]
    # the CNN-feature classifiers of the ensemble step on the members' concatenated penultimate features
    from sklearn.linear_model import LogisticRegression

    from tumorlens.evaluation.ensembles import save_pipeline
    from tumorlens.models.inference import penultimate_features

    feats = np.concatenate(
        [penultimate_features(models[1], ext.images), penultimate_features(models[0], ext.images)], 1
    )
    lr = LogisticRegression(max_iter=200).fit(feats, np.arange(len(feats)) % 4)
    pipe_file = save_pipeline(lr, tmp_path / "hybrid_lr.joblib")
    hybrids = {"CNN+LR": pipe_file, "CNN+SVM": tmp_path / "absent.joblib"}  # a missing pipeline: no row
    _, with_lr = score_runs(runs, [ext], members=members, hybrids=hybrids, n_boot=50, show_progress=False)
    want = compact(score_external(lr.predict_proba(feats), ext, n_boot=50))
    assert with_lr["CNN+LR"]["ext"]["accuracy"] == pytest.approx(want["accuracy"]) and "CNN+SVM" not in with_lr
    # a member that was not scored: no ensemble row rather than a vote of fewer models
    assert score_runs(runs[:1], [ext], members=members, hybrids=hybrids, n_boot=50, show_progress=False)[1] == {}
    with pytest.raises(ValueError, match=r"seed-1: a 32 px model, but the external set .*ext was read at 48 px"):
        score_runs(runs[:1], [load_external(root, 48, show_progress=False)], show_progress=False)
    # runs of several input sizes (Lite1/Lite2 at their native sides): each scored on the set read at its size
    read_at: dict[int, list] = {}

    def sets_at(side):
        read_at.setdefault(side, [load_external(root, side, show_progress=False)])
        return read_at[side]

    keras.utils.set_random_seed(4)
    wide = tmp_path / "runs" / "efficientnet_lite0@wide" / "seed-4"
    wide.mkdir(parents=True)
    build_classifier("efficientnet_lite0", (), image_size=48, weights="none").save(wide / "model.keras")
    per_size, _ = score_runs([runs[0], wide], sets_at, n_boot=50, show_progress=False)
    assert sorted(read_at) == [32, 48] and sorted(per_size) == [
        "efficientnet_lite0/seed-1",
        "efficientnet_lite0@wide/seed-4",
    ]
    assert per_size["efficientnet_lite0/seed-1"]["ext"] == per_run["efficientnet_lite0/seed-1"]["ext"]


def test_the_rq_tables_and_the_runs_table_carry_the_external_scores(tmp_path):
    import json

    from tumorlens.book.tables import runs_table, systems_table
    from tumorlens.experiments.rq import external_scores

    assert external_scores(tmp_path) == (None, {}, {})
    score = {"n": 500, "accuracy": 0.9, "accuracy_lo": 0.87, "accuracy_hi": 0.93, "macro_f1": 0.88}
    score |= {"macro_f1_lo": 0.85, "macro_f1_hi": 0.91, "notumor_recall": 0.7, "per_view": {}}
    record = {
        "profile": "cpu",
        "models": {},
        "sets": [{"name": "brisc", "systems": {}}, {"name": "other", "systems": {}}],
        "runs": {"a/seed-42": {"brisc": score, "other": dict(score, accuracy=0.1)}},
        "ensemble_systems": {"soft voting": {"brisc": score}},
    }
    (tmp_path / "external.json").write_text(json.dumps({"schema": {"name": "external", "version": 1}, **record}))
    name, runs, systems = external_scores(tmp_path)
    assert name == "brisc" and runs["a/seed-42"]["accuracy"] == 0.9 and systems["soft voting"]["n"] == 500
    row = {
        f"{t}_{m}{e}": 0.95 for t in ("official", "dedup") for m in ("accuracy", "macro_f1") for e in ("", "_lo", "_hi")
    }
    table = runs_table(
        {
            "a/seed-42": {
                **row,
                "parameters": 10,
                "external_accuracy": 0.9,
                "external_accuracy_lo": 0.87,
                "external_accuracy_hi": 0.93,
                "external_notumor_recall": 0.7,
            },
            "b/seed-42": {**row, "parameters": 10},
        }
    )
    assert table.loc["a/seed-42", "no-tumour recall (external)"] == "0.700"
    assert table.loc["b/seed-42", "accuracy (external)"] == "not scored"
    ext_table = systems_table({"systems": {"soft voting": {"external": score}, "CNN+LR": {}}}, "external")
    assert list(ext_table.index) == ["soft voting"] and ext_table.loc["soft voting", "no-tumour recall"] == "0.700"


def test_the_evidence_gate_vetoes_tumour_calls_without_evidence_and_is_chosen_on_validation():
    """`gate_predictions`: a tumour prediction below the threshold becomes no tumour, others stay;
    `choose_threshold` takes the best validation accuracy (no gate when none helps there)."""
    from tumorlens.evaluation.gate import NO_TUMOUR_INDEX, choose_threshold, evidence_quantiles, gate_curve
    from tumorlens.evaluation.gate import gate_predictions as gate

    menin, no = CLASSES.index("meningioma"), NO_TUMOUR_INDEX
    probs = np.eye(4)[[menin, menin, no, menin]]
    evidence = np.array([0.9, 0.1, 0.0, 0.5])
    assert gate(probs, evidence, 0.0).tolist() == [menin, menin, no, menin]  # threshold 0: the argmax
    assert gate(probs, evidence, 0.3).tolist() == [menin, no, no, menin]
    assert gate(probs, evidence, 0.95).tolist() == [no, no, no, no]
    with pytest.raises(ValueError, match=r"evidence \(N,\); received shapes \(4, 4\) and \(3,\)"):
        gate(probs, evidence[:3], 0.5)
    # validation: the low-evidence image is a real meningioma (the gate would hurt); elsewhere it is healthy
    val = (np.array([menin, menin, no, menin]), probs, evidence)
    ext = (np.array([menin, no, no, menin]), probs, evidence)
    rows = gate_curve({"validation": val, "external": ext}, [0.0, 0.3, 0.6])
    assert [r["validation_accuracy"] for r in rows] == [1.0, 0.75, 0.5]
    assert [r["external_accuracy"] for r in rows] == [0.75, 1.0, 0.75]
    assert [r["external_notumor_recall"] for r in rows] == [0.5, 1.0, 1.0]
    assert rows[0]["validation_notumor_recall"] == 1.0
    assert choose_threshold(rows, "validation")["threshold"] == 0.0  # chosen where it is allowed to be chosen
    assert choose_threshold(rows, "external")["threshold"] == 0.3
    with pytest.raises(ValueError, match="'test'"):
        choose_threshold(rows, "test")
    q = evidence_quantiles(val[0], evidence)
    assert q["meningioma"]["n"] == 3 and q["meningioma"]["quantiles"]["0.5"] == 0.5 and q["glioma"]["n"] == 0


def test_tumour_evidence_is_a_percentile_inside_the_head_and_zero_without_one(tmp_path):
    """`tumour_evidence` on a tiny segmenter: one value in [0, 1] per image, 0 for a flat (headless)
    image; and the record `tumorlens external` keeps of the gate, on the smoke profile's validation split."""
    from tumorlens.experiments.external import GATE_THRESHOLDS, evidence_gate_record
    from tumorlens.explain.refine import build_segmenter, tumour_evidence
    from tumorlens.models.classifier import build_classifier

    clf = build_classifier("efficientnet_lite0", (), image_size=64, weights="none")
    seg = build_segmenter(clf, "efficientnet_lite0", width=4)
    ext = load_external(_external(tmp_path / "ext", bad=False), 64, show_progress=False)
    x = np.concatenate([ext.images[:3], np.zeros((1, 64, 64, 3), np.uint8)])
    probs, ev = tumour_evidence(seg, x, flip=True)
    assert probs.shape == (4, 4) and ev.shape == (4,) and ev[-1] == 0.0
    assert ((ev[:3] > 0) & (ev[:3] <= 1)).all()
    assert (tumour_evidence(seg, x, q=50)[1][:3] <= ev[:3] + 1e-6).all()  # a lower percentile, no more evidence
    with pytest.raises(ValueError, match="q=150"):
        tumour_evidence(seg, x, q=150)
    rec = evidence_gate_record("smoke", seg, 64, [ext], "tiny", flip=True)
    assert rec["sets"] == ["validation", "ext"] and rec["flip"] is True and rec["model"] == "tiny"
    assert len(rec["curve"]) == len(GATE_THRESHOLDS) and rec["curve"][0]["threshold"] == 0.0
    assert rec["chosen"]["validation_accuracy"] == max(r["validation_accuracy"] for r in rec["curve"])
    assert rec["evidence"]["ext"]["glioma"]["n"] == 3


def test_the_evidence_gate_in_words_and_as_a_figure():
    from tumorlens.book.figures import gate_curve as gate_figure
    from tumorlens.book.pages import evidence_gate_words
    from tumorlens.evaluation.gate import choose_threshold, evidence_quantiles, gate_curve

    menin, no = CLASSES.index("meningioma"), CLASSES.index("notumor")
    probs = np.eye(4)[[menin, menin, no, menin]]
    evidence = np.array([0.9, 0.1, 0.0, 0.5])
    sets = {"validation": (np.array([menin, menin, no, menin]), probs, evidence)}
    sets["brisc"] = (np.array([menin, no, no, menin]), probs, evidence)
    rows = gate_curve(sets, [0.0, 0.3, 0.6])
    gate = {
        "sets": list(sets),
        "evidence": {k: evidence_quantiles(y, e) for k, (y, _, e) in sets.items()},
        "curve": rows,
        "chosen": choose_threshold(rows),
    }
    words = evidence_gate_words({"evidence_gate": gate})
    assert (
        "Chosen on validation, the threshold is 0.00 (no gate; validation accuracy 1.000, brisc accuracy 0.750" in words
    )
    assert "lowest threshold that lifts the brisc no-tumour recall to 0.90 or more is 0.30 (recall 1.00)" in words
    assert "validation accuracy falls from 1.000 to 0.750" in words
    assert evidence_gate_words({}).startswith("not measured")
    fig = gate_figure(gate)
    assert len(fig.data) == 4 and list(fig.data[0].x) == [0.0, 0.3, 0.6]
