"""Results plumbing on synthetic runs: RQ tables, `collect`, ensemble members, robustness, run records.

Every run here is written by hand (no dataset, no Keras training) with predictions whose scores are known
exactly: test image ``i`` (of 20) has class ``i % 4``, the odd images form the de-duplicated subset, and a run
"right on" a set of images gives 0.7 to the true class there and 0.7 to the next class everywhere else. The
assertions compare the library's numbers with those hand-computed ones.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tumorlens import records
from tumorlens.book.text import verdict
from tumorlens.config import CLASSES, PAPER_MODULES, load_config
from tumorlens.evaluation.ensembles import select_members, soft_vote
from tumorlens.evaluation.robustness import apply_temperature, calibration, fit_temperature, robustness_table
from tumorlens.experiments import collect as collect_mod
from tumorlens.experiments.jobs import job_inputs, plan
from tumorlens.experiments.rq import compare_runs, rq_tables
from tumorlens.models.classifier import variant_name
from tumorlens.records import (
    CONFIG,
    HISTORY,
    METRICS,
    MODEL,
    PREDICTIONS,
    RUN_INFO,
    TEST_SETS,
    VAL_PREDICTIONS,
    load_run,
    published_run,
    read_predictions,
    write_history,
    write_predictions,
    write_test_results,
)
from tumorlens.utils.files import read_json, write_json

N_BOOT = 200
N = 20
Y = np.arange(N) % 4
DEDUP = np.arange(N) % 2 == 1  # the odd images
VAL_Y = np.arange(8) % 4


@dataclass(frozen=True)
class Rec:
    """The two fields of `tumorlens.data.ImageRecord` the writers read."""

    rel: str
    cls: str


TEST_RECS = [Rec(f"Testing/{CLASSES[c]}/img{i:02d}.jpg", CLASSES[c]) for i, c in enumerate(Y)]
VAL_RECS = [Rec(f"Training/{CLASSES[c]}/val{i}.jpg", CLASSES[c]) for i, c in enumerate(VAL_Y)]
DEDUP_PATHS = {r.rel for r, d in zip(TEST_RECS, DEDUP) if d}

SMOKE = load_config("smoke")
BB = SMOKE.model.backbone
STD = variant_name(BB)
ALLM = variant_name(BB, PAPER_MODULES)
MAB = variant_name(BB, ("mab",))
WARMUP = f"{ALLM}@warmup-only"  # the tag the runner gives the warm-up-only job
S0, S1 = SMOKE.reproduce.seeds[:2]

IDX = np.arange(N)
# which test images each synthetic run gets right (official accuracy, dedup accuracy)
RIGHT = {
    (STD, S0): IDX < 10,  # 0.5, 0.5
    (STD, S1): (IDX % 2 == 1) | (IDX >= 16),  # 0.6, 1.0
    (ALLM, S0): IDX < 18,  # 0.9, 0.9
    (ALLM, S1): IDX < 16,  # 0.8, 0.8
    (MAB, S0): IDX < 14,  # 0.7
    (WARMUP, S0): IDX < 6,  # 0.3
    ("vit", S0): IDX < 4,  # 0.2
}
PARAMS = {STD: 4_000_000, ALLM: 4_500_000, MAB: 4_100_000, WARMUP: 4_500_000, "vit": 5_000}


def probs_for(right, y=Y) -> np.ndarray:
    """0.7 on the true class where ``right``, on the next class elsewhere; 0.1 on the others."""
    right, y = np.asarray(right, bool), np.asarray(y)
    p = np.full((len(y), len(CLASSES)), 0.1)
    p[np.arange(len(y)), np.where(right, y, (y + 1) % len(CLASSES))] = 0.7
    return p


def write_run(run_dir, right, *, live=False, val_right=None, parameters=1000, wall=60.0, reverse=False):
    """A finished run: ``config.json`` (live) or ``run.json`` (published), metrics, predictions, history.

    ``reverse`` writes the test predictions in reverse order (comparisons must pair images by path)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "config": {"model": {"backbone": BB}},
        "dataset": DATASET,
        "environment": {},
        "summary": {"parameters": parameters, "wall_seconds": wall},
    }
    write_json(run_dir / (CONFIG if live else RUN_INFO), info, schema="run")
    order = np.arange(N)[::-1] if reverse else np.arange(N)
    write_test_results(run_dir, [TEST_RECS[k] for k in order], probs_for(right)[order], DEDUP_PATHS)
    val_right = np.ones(len(VAL_Y), bool) if val_right is None else val_right
    write_predictions(run_dir / VAL_PREDICTIONS, VAL_RECS, probs_for(val_right, VAL_Y))
    write_history(run_dir / HISTORY, [{"phase": "warmup", "epoch": 1, "loss": 1.0, "accuracy": 0.5}])
    return run_dir


def row_of(rows, **match):
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one row matching {match}, found {len(found)}"
    return found[0]


DATASET = {"name": "phantoms", "n_images": N, "fingerprint": "0123456789abcdef"}
SCAN = {
    "dataset": DATASET,
    "layout": "kaggle",
    "n_images": N,
    "counts": {},
    "channels": {"single-channel": N},
    "n_bad": 0,
    "bad": [],
}
ENSEMBLES = {
    "members": [{"run_dir": "x/seed-42", "name": f"{ALLM}/seed-{S0}", "val_macro_f1": 1.0}],
    "comparisons": [{"a": "soft voting", "b": "single best", "diff": 0.05, "test_set": "official"}],
    "systems": {
        name: {
            t: {"n": n, "accuracy": acc, "macro_f1": acc - 0.01, "ci": {"accuracy": {}}, "log_loss": 0.3}
            for t, n in (("official", 20), ("dedup", 10))
        }
        for name, acc in (("single best", 0.9), ("soft voting", 0.95))
    },
}
SEG_SUMMARY = {
    "model": f"{ALLM}/seed-{S0}",
    "n_report": 4,
    "map": "layercam@fusion",
    "mask": "grabcut",
    "params": {},
    "methods": [],
    "per_class": {
        "all": {
            "dice_cam": {"mean": 0.475, "median": 0.5},
            "dice_grabcut": {"mean": 0.7, "median": 0.7},
            "iou_cam": {"mean": 0.3, "median": 0.33},
            "iou_grabcut": {"mean": 0.55, "median": 0.54},
            "pointing": 0.75,
            "pointing_near": 0.8,
            "centre_pointing": 0.5,
            "centre_pointing_near": 0.6,
        }
    },
}
DICE_GRABCUT = [0.8, 0.6, 0.9, 0.5]
DICE_CAM = [0.5, 0.5, 0.4, 0.5]  # paired differences 0.3, 0.1, 0.5, 0.0: mean 0.225


def write_segmentation(folder):
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "summary.json", SEG_SUMMARY, schema="segmentation")
    with open(folder / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "dice_cam", "dice_grabcut"])
        w.writerows([f"img{k}.jpg", c, g] for k, (c, g) in enumerate(zip(DICE_CAM, DICE_GRABCUT)))


# ---------------------------------------------------------------- RQ tables on a published results folder


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    res = tmp_path_factory.mktemp("results")
    for (variant, seed), right in RIGHT.items():
        write_run(published_run(res, variant, seed), right, parameters=PARAMS[variant], reverse=variant == STD)
    write_json(res / "ensembles" / "ensembles.json", ENSEMBLES, schema="ensembles")
    write_segmentation(res / "segmentation")
    return res


@pytest.fixture(scope="module")
def rq(results):
    return rq_tables(results, SMOKE, n_boot=N_BOOT)


def test_further_backbones_get_a_seed_table_beside_the_standard_variant(tmp_path):
    """`reproduce.backbones`: each one's standard runs over the seeds, summarised like RQ1's table."""
    res = tmp_path / "results"
    for (variant, seed), right in RIGHT.items():
        if variant == STD:
            write_run(published_run(res, variant, seed), right)
    write_run(published_run(res, "efficientnet_lite1", S0), IDX < 12)  # 0.6
    write_run(published_run(res, "efficientnet_lite1", S1), IDX < 16)  # 0.8
    assert "backbones" not in rq_tables(res, SMOKE, n_boot=N_BOOT)  # none configured
    cfg = SMOKE.override({"reproduce.backbones": ["efficientnet_lite1", "efficientnet_lite2"]})
    out = rq_tables(res, cfg, n_boot=N_BOOT)["backbones"]
    assert out["variants"] == [STD, "efficientnet_lite1"]  # Lite2 has no run: no row
    r = row_of(out["seeds_table"], variant="efficientnet_lite1", test_set="official", metric="accuracy")
    assert r["n"] == 2 and r["values"] == pytest.approx([0.6, 0.8]) and r["mean"] == pytest.approx(0.7)
    std = row_of(out["seeds_table"], variant=STD, test_set="official", metric="accuracy")
    assert std["values"] == pytest.approx([0.5, 0.6])


def test_rq1_seed_table_averages_the_planted_accuracies(rq):
    assert rq["backbone"] == BB and rq["seeds"] == list(SMOKE.reproduce.seeds)
    table = rq["rq1"]["seeds_table"]
    assert len(table) == 2 * len(TEST_SETS) * 2  # 2 variants x test sets x 2 metrics
    expected = {
        (STD, "official"): [0.5, 0.6],
        (STD, "dedup"): [0.5, 1.0],
        (ALLM, "official"): [0.9, 0.8],
        (ALLM, "dedup"): [0.9, 0.8],
    }
    for (variant, test_set), values in expected.items():
        r = row_of(table, variant=variant, test_set=test_set, metric="accuracy")
        assert r["n"] == 2 and r["values"] == pytest.approx(values)
        assert r["mean"] == pytest.approx(np.mean(values)) and r["sd"] == pytest.approx(np.std(values, ddof=1))
    # macro-F1 per seed is sklearn's on the planted predictions
    for (variant, test_set), _ in expected.items():
        m = DEDUP if test_set == "dedup" else np.ones(N, bool)
        want = [
            f1_score(Y[m], probs_for(RIGHT[variant, s])[m].argmax(1), labels=range(4), average="macro", zero_division=0)
            for s in (S0, S1)
        ]
        r = row_of(table, variant=variant, test_set=test_set, metric="macro_f1")
        assert r["values"] == pytest.approx(want)


def test_rq1_all_modules_beat_the_standard_backbone_on_seed_0(rq):
    comps = rq["rq1"]["comparisons"]
    assert len(comps) == 2 * 4 + 4  # both seeds x (2 test sets x 2 metrics) + the one ablation present
    r = row_of(comps, seed=S0, test_set="official", metric="accuracy", a=ALLM, b=STD, ablation=None)
    assert r["n"] == N and r["value_a"] == pytest.approx(0.9) and r["value_b"] == pytest.approx(0.5)
    assert r["diff"] == pytest.approx(0.4)
    assert (r["mcnemar_b"], r["mcnemar_c"]) == (8, 0)  # images 10-17: only the all-modules run is right
    assert 0 < r["ci_lo"] <= r["diff"] <= r["ci_hi"] and verdict(r).startswith("better")
    d = row_of(comps, seed=S0, test_set="dedup", metric="accuracy", a=ALLM, ablation=None)
    assert d["n"] == DEDUP.sum() and d["diff"] == pytest.approx(0.9 - 0.5)
    # seed 1: 0.8 vs 0.6 with 8 vs 4 discordant images, too few to tell apart
    s1 = row_of(comps, seed=S1, test_set="official", metric="accuracy", a=ALLM, ablation=None)
    assert s1["diff"] == pytest.approx(0.2) and (s1["mcnemar_b"], s1["mcnemar_c"]) == (8, 4)
    assert verdict(s1).startswith("not distinguishable")
    s1d = row_of(comps, seed=S1, test_set="dedup", metric="accuracy", a=ALLM, ablation=None)
    assert s1d["diff"] == pytest.approx(0.8 - 1.0)


def test_rq1_ablations_only_for_the_modules_that_were_run(rq):
    abl = [r for r in rq["rq1"]["comparisons"] if "ablation" in r]
    assert {r["ablation"] for r in abl} == {"mab"} and len(abl) == 4
    r = row_of(abl, test_set="official", metric="accuracy")
    assert (r["a"], r["b"], r["seed"]) == (MAB, STD, S0) and r["diff"] == pytest.approx(0.7 - 0.5)


def test_rq2_keeps_the_ensemble_scores_but_not_the_extras(rq):
    assert rq["rq2"]["members"] == ENSEMBLES["members"] and rq["rq2"]["comparisons"] == ENSEMBLES["comparisons"]
    sv = rq["rq2"]["systems"]["soft voting"]
    assert set(sv) == set(TEST_SETS) and set(sv["official"]) == {"n", "accuracy", "macro_f1", "ci"}
    assert sv["official"]["accuracy"] == 0.95 and sv["dedup"]["n"] == 10


def test_rq3_grabcut_minus_cam_is_the_paired_mean_difference(rq):
    assert rq["rq3"]["summary"] == SEG_SUMMARY
    d = rq["rq3"]["grabcut_minus_cam"]
    assert d["n"] == 4 and d["mean_diff"] == pytest.approx(0.225)
    assert 0.0 <= d["lo"] <= d["mean_diff"] <= d["hi"] <= 0.5  # every difference lies in [0, 0.5]


def test_rq4_and_rq5_compare_with_the_right_runs(rq):
    r4 = row_of(rq["rq4"]["comparisons"], test_set="official", metric="accuracy")
    assert (r4["a"], r4["b"]) == (ALLM, WARMUP) and r4["diff"] == pytest.approx(0.9 - 0.3)
    r5 = row_of(rq["rq5"]["comparisons"], test_set="official", metric="accuracy")
    assert (r5["a"], r5["b"]) == ("vit", STD) and r5["diff"] == pytest.approx(0.2 - 0.5)
    assert r5["ci_hi"] < 0 and verdict(r5).startswith("worse")
    assert rq["rq5"]["vit_parameters"] == PARAMS["vit"] and rq["rq5"]["cnn_parameters"] == PARAMS[STD]


def test_runs_table_scores_every_published_run(rq):
    assert set(rq["runs"]) == {f"{v}/seed-{s}" for v, s in RIGHT}
    for (variant, seed), right in RIGHT.items():
        row = rq["runs"][f"{variant}/seed-{seed}"]
        assert (row["variant"], row["seed"], row["parameters"]) == (variant, seed, PARAMS[variant])
        assert row["official_accuracy"] == pytest.approx(right.mean())
        assert row["dedup_accuracy"] == pytest.approx(right[DEDUP].mean())
        for key in ("official_accuracy", "dedup_macro_f1"):
            assert row[f"{key}_lo"] <= row[key] <= row[f"{key}_hi"]


def test_rq_tables_without_optional_results(tmp_path):
    for variant in (STD, ALLM):
        write_run(published_run(tmp_path, variant, S0), RIGHT[variant, S0])
    out = rq_tables(tmp_path, SMOKE, n_boot=50)
    assert not {"rq2", "rq3", "rq4", "rq5"} & set(out)
    r = row_of(out["rq1"]["seeds_table"], variant=ALLM, test_set="official", metric="accuracy")
    assert r["n"] == 1 and r["mean"] == pytest.approx(0.9) and np.isnan(r["sd"])
    assert {c["seed"] for c in out["rq1"]["comparisons"]} == {S0} and len(out["rq1"]["comparisons"]) == 4


def test_compare_runs_pairs_images_by_path(results):
    a, b = load_run(published_run(results, ALLM, S0)), load_run(published_run(results, STD, S0))
    assert b["pred"].paths[0] == TEST_RECS[-1].rel  # written in reverse order
    rows = compare_runs(a, b, "A", "B", n_boot=N_BOOT)
    assert [(r["test_set"], r["metric"]) for r in rows] == [(t, m) for t in TEST_SETS for m in ("accuracy", "macro_f1")]
    assert [r["n"] for r in rows] == [N, N, DEDUP.sum(), DEDUP.sum()]
    assert rows[0]["diff"] == pytest.approx(0.4) and (rows[0]["mcnemar_b"], rows[0]["mcnemar_c"]) == (8, 0)
    back = compare_runs(b, a, "B", "A", n_boot=N_BOOT)[0]
    assert back["diff"] == pytest.approx(-0.4) and back["ci_hi"] < 0 and verdict(back).startswith("worse")
    a["pred"].paths[0] = "Testing/glioma/not-in-b.jpg"
    with pytest.raises(ValueError, match="not-in-b"):
        compare_runs(a, b, "A", "B", n_boot=10)


# ---------------------------------------------------------------- collect


def test_collect_publishes_runs_and_the_headline(tmp_path, monkeypatch):
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path))
    # the smoke profile planning one other backbone (as the cpu profile plans three)
    config = tmp_path / "_config.yml"
    text = (Path(__file__).resolve().parents[1] / "_config.yml").read_text()
    config.write_text(text.replace("      other_backbones: []", "      other_backbones: [mobilenetv2]", 1))
    monkeypatch.setenv("TUMORLENS_CONFIG", str(config))
    smoke_root = load_config("smoke").runs_root
    assert smoke_root == tmp_path / "smoke"
    monkeypatch.setenv("TUMORLENS_RESULTS", str(tmp_path / "results"))  # its job records, not the repo's
    live, res = tmp_path / "live", tmp_path / "results" / "smoke"
    jobs = {j.run_dir.relative_to(smoke_root): j for j in plan("smoke")}

    def complete(d, seconds):
        """``d`` (under live/, a copy of the smoke runs root) as its planned job completed now."""
        job = jobs[d.relative_to(live)]
        (d / "notebook.ipynb").write_text("{}")
        inputs = job_inputs(type(job)(job.notebook, d, job.params))
        write_json(d / ".done.json", {"notebook": job.notebook, "seconds": seconds, "inputs": inputs})

    for variant in (STD, ALLM):
        d = write_run(live / variant / f"seed-{S0}", RIGHT[variant, S0], live=True, parameters=PARAMS[variant])
        (d / MODEL).write_bytes(b"not really a model")
        complete(d, 45)
    other = write_run(smoke_root / "mobilenetv2" / f"seed-{S0}", IDX < 5, live=True)
    job = next(j for j in plan("smoke") if j.run_dir == other)  # a planned job: complete and current
    (other / "notebook.ipynb").write_text("{}")
    write_json(other / ".done.json", {"notebook": "02_train", "seconds": 30, "inputs": job_inputs(job)})
    write_json(live / "ensembles" / "ensembles.json", ENSEMBLES, schema="ensembles")
    (live / "ensembles" / "hybrid_lr.joblib").write_bytes(b"pickle")
    write_segmentation(live / "explain")
    (live / "explain" / "gallery.png").write_bytes(b"png")
    write_json(live / "data" / "scan.json", SCAN, schema="scan")
    write_json(live / "data" / "other.json", {"n": 2})
    (live / "data" / "figures").mkdir()
    (live / "data" / "figures" / "examples.jpg").write_bytes(b"jpeg")
    (live / "data" / "figures" / "notes.txt").write_text("not a figure")
    for step in ("ensembles", "explain", "data"):  # timed at 0 s: the times below are the runs'
        complete(live / step, 0)
    write_run(live / STD / f"seed-{S1}", RIGHT[STD, S1], live=True)  # not complete: left out
    write_run(published_run(res, "stale", 1), IDX < 1)  # from an earlier collect: must go

    calls = []

    def fake_block_costs(image_size):
        calls.append(image_size)
        return [{"block": "mab", "parameters": 1}]

    monkeypatch.setattr(collect_mod, "block_costs", fake_block_costs)
    assert collect_mod.collect("smoke", runs_root=live, out=res, n_boot=N_BOOT) == res

    for variant in (STD, ALLM):
        src, dest = live / variant / f"seed-{S0}", published_run(res, variant, S0)
        small = [METRICS, PREDICTIONS, VAL_PREDICTIONS, HISTORY]
        assert sorted(p.name for p in dest.iterdir()) == sorted([*small, RUN_INFO])  # no model, config, .done
        for name in small:
            assert (dest / name).read_bytes() == (src / name).read_bytes()
        info = json.loads((dest / RUN_INFO).read_text())
        assert info["summary"]["run_dir"] == f"{variant}/seed-{S0}" and info["summary"]["parameters"] == PARAMS[variant]
    assert not published_run(res, "stale", 1).exists()
    assert (res / "smoke_backbones" / "mobilenetv2" / f"seed-{S0}" / RUN_INFO).is_file()
    assert sorted(p.name for p in (res / "ensembles").iterdir()) == ["ensembles.json"]
    assert sorted(p.name for p in (res / "segmentation").iterdir()) == ["per_image.csv", "summary.json"]
    assert sorted(p.name for p in (res / "data").iterdir()) == ["figures", "scan.json"]
    assert [p.name for p in (res / "data" / "figures").iterdir()] == ["examples.jpg"]

    assert calls == [SMOKE.data.image_size]
    costs = read_json(res / "block_costs.json", schema="block_costs")
    del costs["schema"]
    assert costs == {"image_size": SMOKE.data.image_size, "blocks": [{"block": "mab", "parameters": 1}]}
    repro = json.loads((res / "reproduction.json").read_text())
    steps = ["smoke/data", "smoke/ensembles", "smoke/explain"]  # named as the records name them
    assert sorted(j["job"] for j in repro["jobs"]) == sorted(
        [f"smoke/{STD}/seed-{S0}", f"smoke/{ALLM}/seed-{S0}", f"smoke/mobilenetv2/seed-{S0}", *steps]
    )
    assert not published_run(res, STD, S1).exists()
    assert repro["total_seconds"] == 120.0 and repro["total_minutes"] == 2.0

    rq = json.loads((res / "rq.json").read_text())
    assert row_of(rq["rq1"]["comparisons"], test_set="official", metric="accuracy")["diff"] == pytest.approx(0.4)
    summary = json.loads((res / "summary.json").read_text())
    assert summary["profile"] == "smoke" and summary["image_size"] == SMOKE.data.image_size
    assert set(summary["models"]) == {f"{STD}/seed-{S0}", f"{ALLM}/seed-{S0}"}  # not the other backbone
    for variant, acc in ((STD, 0.5), (ALLM, 0.9)):
        m = summary["models"][f"{variant}/seed-{S0}"]
        assert m["official_accuracy"] == pytest.approx(acc) and m["dedup_accuracy"] == pytest.approx(acc)
    assert summary["ensembles"]["soft voting"]["official_accuracy"] == 0.95
    assert summary["segmentation"]["dice_grabcut_mean"] == 0.7 and summary["segmentation"]["pointing_game"] == 0.75
    acc_target = summary["targets"]["accuracy"]
    assert acc_target["best"] == "soft voting" and acc_target["accuracy"] == 0.95
    assert acc_target["met"] is (min(0.95, 0.94) >= SMOKE.reproduce.target_accuracy)
    assert summary["targets"]["minutes"]["measured"] == 2.0 and summary["reproduction_minutes"] == 2.0
    manifest = read_json(res / "manifest.json", schema="manifest")
    assert manifest["dataset"] == DATASET and manifest["files"]["summary.json"]["schema"] == "summary/1"
    assert "data/figures/examples.jpg" in manifest["files"] and collect_mod.check_results(res) == []

    # refresh the segmentation alone: the other parts and the reproduction time stay as collected
    shutil.rmtree(live / STD)
    (live / "explain" / "segmenter.keras").write_bytes(b"a model: never published")
    (live / "explain" / "gallery_public_glioma.jpg").write_bytes(b"jpeg")
    (live / "explain" / "methods.csv").write_text("map,mask\n")
    complete(live / ALLM / f"seed-{S0}", 100)  # rerun since, and the explain step after it
    complete(live / "explain", 0)
    collect_mod.collect("smoke", runs_root=live, out=res, n_boot=N_BOOT, only=["segmentation"])
    assert published_run(res, STD, S0).is_dir()
    repro = json.loads((res / "reproduction.json").read_text())  # the rerun job replaced, the others kept
    assert sorted(j["job"] for j in repro["jobs"]) == sorted(
        [f"smoke/{STD}/seed-{S0}", f"smoke/{ALLM}/seed-{S0}", f"smoke/mobilenetv2/seed-{S0}", *steps]
    )
    assert repro["total_seconds"] == 45 + 100 + 30
    assert sorted(p.name for p in (res / "segmentation").iterdir()) == [
        "gallery_public_glioma.jpg",
        "methods.csv",
        "per_image.csv",
        "summary.json",
    ]
    with pytest.raises(ValueError, match="'nope'"):
        collect_mod.collect("smoke", runs_root=live, out=res, only=["nope"])


# ---------------------------------------------------------------- ensembles


def test_members_ranked_on_validation_and_soft_vote_fixes_disjoint_errors(tmp_path):
    # validation: a > b > c; test: c > b > a (a ranking read from test scores would pick c and b)
    val = {"a": VAL_Y >= 0, "b": np.arange(8) < 6, "c": np.arange(8) < 3}
    wrong = {"a": IDX < 8, "b": (IDX >= 8) & (IDX < 12), "c": (IDX >= 12) & (IDX < 14)}  # disjoint errors
    dirs = {k: write_run(tmp_path / k / "seed-1", ~wrong[k], val_right=val[k]) for k in "abc"}
    chosen = select_members([dirs["c"], dirs["a"], dirs["b"]], k=2)
    assert [m["name"] for m in chosen] == ["a/seed-1", "b/seed-1"]
    want = f1_score(VAL_Y, probs_for(val["b"], VAL_Y).argmax(1), labels=range(4), average="macro", zero_division=0)
    assert chosen[0]["val_macro_f1"] == 1.0 and chosen[1]["val_macro_f1"] == pytest.approx(want)
    assert len(select_members(list(dirs.values()), k=5)) == 3
    by_acc = select_members(list(dirs.values()), k=3, metric="accuracy")
    assert [m["val_accuracy"] for m in by_acc] == [1.0, 0.75, 0.375]

    preds = [read_predictions(d) for d in dirs.values()]
    assert [np.mean(p.pred == p.y) for p in preds] == [0.6, 0.8, 0.9]
    voted = soft_vote([p.probs for p in preds])
    assert np.allclose(voted, np.mean([p.probs for p in preds], axis=0))
    assert (voted.argmax(1) == Y).all()  # two of three members are right on every image
    assert np.allclose(soft_vote([p.probs for p in preds], [0, 0, 2]), preds[2].probs)


# ---------------------------------------------------------------- robustness and calibration

# constant grey images; the fake model reads the class from the mean intensity in 64-level buckets
LEVELS = np.array([32, 96, 160, 224, 32, 96, 160, 224, 100])
ROB_Y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0])  # the last image is misread (100 -> class 1) even when clean
ROB_DEDUP = np.array([True] * 4 + [False] * 5)
ROB_IMAGES = np.broadcast_to(LEVELS[:, None, None, None], (9, 8, 8, 3)).astype(np.uint8)


def bucket_model(images):
    cls = np.clip(np.asarray(images, float).reshape(len(images), -1).mean(1) // 64, 0, 3).astype(int)
    return np.eye(4)[cls] * 0.9 + 0.025


def test_robustness_rows_and_drops_on_a_fake_model():
    calls = []

    def predict(x):
        calls.append(len(x))
        return bucket_model(x)

    rows = robustness_table(
        predict,
        ROB_IMAGES,
        ROB_Y,
        ROB_DEDUP,
        kinds=("brightness", "contrast"),
        severities=(1, 3),
        n_boot=200,
        show_progress=False,
    )
    assert len(calls) == 1 + 2 * 2
    assert [(r["kind"], r["severity"], r["test_set"]) for r in rows] == [
        ("clean", 0, "official"),
        ("clean", 0, "dedup"),
        *[(k, s, t) for k in ("brightness", "contrast") for s in (1, 3) for t in TEST_SETS],
    ]
    # brightness x1.3: 160 -> 208 and 100 -> 130 are misread; x2.0: only 224 (clipped to 255) stays right.
    # contrast around the image mean leaves a constant image unchanged.
    expected = {
        ("clean", "official"): 8 / 9,
        ("clean", "dedup"): 1.0,
        ("brightness", 1, "official"): 6 / 9,
        ("brightness", 1, "dedup"): 3 / 4,
        ("brightness", 3, "official"): 2 / 9,
        ("brightness", 3, "dedup"): 1 / 4,
        ("contrast", 1, "official"): 8 / 9,
        ("contrast", 3, "dedup"): 1.0,
    }
    for key, acc in expected.items():
        kind, *sev, t = key
        r = row_of(rows, kind=kind, test_set=t, **({"severity": sev[0]} if sev else {}))
        assert r["accuracy"] == pytest.approx(acc)
    clean = {r["test_set"]: r for r in rows if r["kind"] == "clean"}
    for r in rows:
        for metric in ("accuracy", "macro_f1"):
            assert r[f"{metric}_drop"] == pytest.approx(clean[r["test_set"]][metric] - r[metric])
            assert r[f"{metric}_drop_lo"] <= r[f"{metric}_drop"] <= r[f"{metric}_drop_hi"]
    assert row_of(rows, kind="contrast", severity=3, test_set="official")["accuracy_drop_hi"] == 0.0

    only_official = robustness_table(
        bucket_model, ROB_IMAGES, ROB_Y, kinds=("contrast",), severities=(2,), n_boot=50, show_progress=False
    )
    assert [r["test_set"] for r in only_official] == ["official", "official"]


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t_true):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (6000, 4))
    e = np.exp(logits - logits.max(1, keepdims=True))
    reported = e / e.sum(1, keepdims=True)  # what the model says
    true_p = apply_temperature(reported, t_true)  # softmax(logits / t_true): how labels really fall
    y = (rng.random((len(true_p), 1)) > true_p.cumsum(1)[:, :-1]).sum(1)
    t = fit_temperature(reported[:3000], y[:3000])
    assert t == pytest.approx(t_true, rel=0.15)
    cal = calibration(reported[:3000], y[:3000], reported[3000:], y[3000:])
    assert cal["temperature"] == pytest.approx(t) and cal["accuracy_unchanged"]
    assert cal["nll_after"] < cal["nll_before"] and cal["ece_after"] < cal["ece_before"]
    assert (cal["n_val"], cal["n_test"]) == (3000, 3000)


# ---------------------------------------------------------------- run records


def test_test_sets_are_official_then_dedup():
    sets = records.test_sets([1, 0, 1])
    assert [name for name, _ in sets] == list(TEST_SETS) == ["official", "dedup"]
    assert sets[0][1].tolist() == [True, True, True] and sets[1][1].tolist() == [True, False, True]
    assert sets[1][1].dtype == bool


def test_predictions_round_trip_with_dedup_flags(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(4), N)
    run = tmp_path / "variant" / "seed-7"
    write_predictions(run / PREDICTIONS, TEST_RECS, probs, DEDUP_PATHS)
    write_predictions(run / VAL_PREDICTIONS, TEST_RECS, probs)  # no dedup column for validation
    p = read_predictions(run)
    assert p.name == "variant/seed-7" and p.paths == [r.rel for r in TEST_RECS]
    assert p.y.tolist() == Y.tolist() and np.allclose(p.probs, probs, atol=1e-6)
    assert p.dedup.tolist() == DEDUP.tolist() and (p.pred == probs.argmax(1)).all()
    with open(run / PREDICTIONS, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["pred_class"] for r in rows] == [CLASSES[k] for k in probs.argmax(1)]
    v = read_predictions(run, "val")
    assert not v.dedup.any() and np.allclose(v.probs, probs, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="finished run"):
        read_predictions(tmp_path / "missing" / "seed-1")


def test_load_run_reads_published_and_live_runs(tmp_path):
    pub = write_run(published_run(tmp_path, ALLM, S1), RIGHT[ALLM, S1], parameters=123, wall=9.5)
    r = load_run(pub)
    assert (r["name"], r["variant"], r["seed"]) == (f"{ALLM}/seed-{S1}", ALLM, S1)
    assert r["summary"] == {"parameters": 123, "wall_seconds": 9.5} and r["config"]["model"]["backbone"] == BB
    assert r["metrics"]["official"]["accuracy"] == pytest.approx(0.8) and r["metrics"]["dedup"]["n"] == DEDUP.sum()
    assert r["dedup"].tolist() == DEDUP.tolist() and r["pred"].paths == [x.rel for x in TEST_RECS]
    live = write_run(tmp_path / "live" / STD / "seed-3", RIGHT[STD, S0], live=True, parameters=7)
    assert load_run(live)["summary"]["parameters"] == 7 and load_run(live)["seed"] == 3
    run_info = {"config": {}, "dataset": DATASET, "environment": {}, "summary": {"parameters": 8}}
    write_json(live / RUN_INFO, run_info, schema="run")  # run.json wins over config.json
    assert load_run(live)["summary"]["parameters"] == 8
    assert json.loads((live / METRICS).read_text())["official"]["accuracy"] == pytest.approx(0.5)


def test_history_puts_epoch_and_phase_first(tmp_path):
    rows = [
        {"val_loss": 0.9, "loss": 1.2, "phase": "warmup", "epoch": 1, "accuracy": 0.4},
        {"phase": "finetune", "epoch": 2, "loss": 0.8, "lr": 1e-4},
    ]
    write_history(tmp_path / HISTORY, rows)
    with open(tmp_path / HISTORY, newline="") as f:
        got = list(csv.reader(f))
    assert got[0] == ["epoch", "phase", "accuracy", "loss", "lr", "val_loss"]
    assert got[1] == ["1", "warmup", "0.4", "1.2", "", "0.9"] and got[2] == ["2", "finetune", "", "0.8", "0.0001", ""]


def test_make_portable_rewrites_absolute_paths_in_results(tmp_path, monkeypatch):
    from tumorlens import paths

    data = tmp_path / "datasets" / "brain-tumor-mri"
    monkeypatch.setenv("TUMORLENS_DATA", str(data))
    monkeypatch.setenv("TUMORLENS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("cpu")
    res = tmp_path / "res"
    write_json(
        res / "variants" / "x" / "run.json",
        {
            "data_root": str(data),
            "scan": {"root": str(data / "Training")},
            "run_dir": str(paths.repo_root() / "runs" / "cpu" / "x"),
            "model": str(tmp_path / "cache" / "phantoms" / "p1"),
            "masks": "/somewhere/else/brisc",
            "note": "/not/a/path/key",
            "config": {"paths": {"runs": str(paths.repo_root() / "runs")}},  # a TUMORLENS_RUNS override
        },
    )
    write_json(res / "clean.json", {"root": "relative/already"})
    assert collect_mod.make_portable(res, cfg) == 1
    out = json.loads((res / "variants" / "x" / "run.json").read_text())
    assert out == {
        "data_root": "$TUMORLENS_DATA",
        "scan": {"root": "$TUMORLENS_DATA/Training"},
        "run_dir": "runs/cpu/x",
        "model": "$TUMORLENS_CACHE/phantoms/p1",
        "masks": "<outside>/brisc",
        "note": "/not/a/path/key",
        "config": {"paths": {"runs": "runs"}},
    }
    assert collect_mod.make_portable(res, cfg) == 0  # idempotent


def test_best_by_validation_reads_only_validation_and_names_missing_runs(tmp_path):
    from tumorlens.records import best_by_validation

    # validation: b best; test: a best (a choice read from test scores would pick a)
    a = write_run(tmp_path / "a" / "seed-1", IDX >= 0, val_right=np.arange(8) < 5)
    b = write_run(tmp_path / "b" / "seed-1", IDX < 2, val_right=VAL_Y >= 0)
    choice = best_by_validation([a, tmp_path / "missing" / "seed-1", b])
    assert (
        choice["name"] == "b/seed-1"
        and choice["considered"] == 2
        and choice["missing"] == [str(tmp_path / "missing" / "seed-1")]
    )
    with pytest.raises(FileNotFoundError, match="none of the 1"):
        best_by_validation([tmp_path / "missing" / "seed-1"])


def test_the_lesion_study_rule_chooses_on_validation_at_the_baselines_seed(tmp_path):
    """`rq.lesion_study`: a recipe qualifies on validation accuracy (at most 1 point below the baseline) and
    the validation control rate (at most 5%); the best validation removal among those is chosen if it
    beats the baseline; a recipe's run at another seed is listed, never chosen; BRISC never enters."""
    from tumorlens.experiments.rq import lesion_study

    base, good, noisy, other = (
        f"{STD}/seed-{S0}",
        f"{STD}@cf-gin/seed-{S0}",
        f"{STD}@cf/seed-{S0}",
        f"{STD}@cf-half/seed-{S1}",
    )
    runs = {}
    for name in (base, good, noisy, other):  # all as accurate on validation as the baseline
        variant, seed = name.split("/")
        write_run(published_run(tmp_path, variant, int(seed.split("-")[1])), IDX < 8)
        runs[name] = {"metrics": {t: {"accuracy": 0.9, "macro_f1": 0.9} for t in ("official", "dedup")}}

    def rates(removed, control):
        one = lambda v: {"value": v}  # noqa: E731
        return {
            "overall": {
                m: {"removed_notumor": one(removed), "control_notumor": one(control), "control_kept": one(0.9)}
                for m in ("telea", "ring")
            }
            | {"original": {"notumor": one(0.0)}},
        }

    val = {
        f"published: {base}": rates(0.01, 0.0),
        good: rates(0.8, 0.02),
        noisy: rates(0.95, 0.2),
        other: rates(0.99, 0.0),
    }
    brisc = {
        f"published: {base}": rates(0.0, 0.0),
        good: rates(0.1, 0.0),
        noisy: rates(0.9, 0.0),
        other: rates(1.0, 0.0),
    }
    record = {"profile": "smoke", "set": {"ids": []}, "dilation": 0.03, "methods": ["telea"], "models": brisc}
    write_json(tmp_path / "lesion.json", record | {"validation": {"models": val}}, schema="lesion")
    study = lesion_study(tmp_path, runs, {}, base, ["cf-gin", "cf", "cf-half"])
    assert [r["model"] for r in study["rows"]][0] == base and len(study["rows"]) == 4
    assert study["qualified"] == [good] and study["choice"] == "cf-gin"  # cf: control too high; cf-half: seed S1
    # the expert-mask (BRISC) rates do not move the choice
    brisc[good] = rates(0.0, 0.9)
    write_json(tmp_path / "lesion.json", record | {"validation": {"models": val}}, schema="lesion")
    assert lesion_study(tmp_path, runs, {}, base, ["cf-gin", "cf", "cf-half"])["choice"] == "cf-gin"
    # a recipe no better than the baseline on validation is not chosen
    val[good] = rates(0.005, 0.0)
    write_json(tmp_path / "lesion.json", record | {"validation": {"models": val}}, schema="lesion")
    assert lesion_study(tmp_path, runs, {}, base, ["cf-gin", "cf", "cf-half"])["choice"] is None
