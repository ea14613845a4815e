import json

import numpy as np
import pytest

from tumorlens.config import load_config
from tumorlens.explain.ground_truth import brisc_items, default_mask_root, phantom_items, split_items
from tumorlens.explain.scoring import evaluate_segmentation, explain_items, score_items, summarise, tune_params
from tumorlens.explain.weak_masks import SegmentParams
from tumorlens.models.classifier import build_classifier


def test_phantom_items_pair_images_with_masks(phantom_root):
    items = phantom_items(phantom_root)
    assert len(items) == 12 and {it.cls for it in items} == {"glioma", "meningioma", "pituitary"}
    assert all(it.mask.is_file() for it in items)


def test_scoring_pipeline_shapes_on_phantoms(phantom_root):
    items = phantom_items(phantom_root)
    model = build_classifier("efficientnet_lite0", ("sbr",), image_size=64, weights="imagenet")
    ic = explain_items(model, "efficientnet_lite0", items, 64, show_progress=False)
    assert ic.images.shape == (12, 64, 64, 3) and ic.cams.shape == ic.cams_true.shape == (12, 64, 64)
    assert 0 <= ic.cams.min() and ic.cams.max() <= 1
    tune, report = split_items(items, 0.5, seed=1)
    assert len(tune) == len(report) == 6 and not {i.id for i in tune} & {i.id for i in report}
    params, grid = tune_params(ic, tune)
    assert grid and 0 <= params.mid <= params.hi <= 1
    rows = score_items(ic, report, params)
    assert len(rows) == 6
    for r in rows:
        for k in ("dice_cam", "iou_cam", "dice_grabcut", "iou_grabcut", "oracle_dice_grabcut"):
            assert 0 <= r[k] <= 1
        assert r["iou_grabcut"] <= r["dice_grabcut"] + 1e-9
    s = summarise(rows)
    assert s["all"]["n"] == 6 and set(s["all"]["dice_grabcut"]) == {"mean", "median", "q1", "q3"}
    for key in ("pointing", "pointing_near", "centre_pointing", "centre_pointing_near"):
        assert 0 <= s["all"][key] <= 1
    # a tolerance can only add hits
    assert all(r["pointing_near"] >= r["pointing"] and r["centre_pointing_near"] >= r["centre_pointing"] for r in rows)


def test_centre_baseline_points_at_the_head():
    from tumorlens.explain.scoring import centre_map

    img = np.zeros((64, 64, 3), np.uint8)
    img[10:40, 26:56] = 200  # an off-centre "head", centre (24.5, 40.5)
    m = centre_map(img)
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert abs(y - 24.5) <= 1.5 and abs(x - 40.5) <= 1.5, (y, x)
    assert m.shape == (64, 64) and 0 <= m.min() and m.max() == pytest.approx(1.0, abs=0.05)
    flat = centre_map(np.zeros((20, 30, 3), np.uint8))  # no head: the image centre
    assert np.unravel_index(np.argmax(flat), flat.shape) in {(9, 14), (9, 15), (10, 14), (10, 15)}


def test_evaluate_segmentation_writes_results(tmp_path):
    """A smoke run end to end: a (random-weight) model's masks scored against the phantoms' truth."""
    cfg = load_config(
        "smoke",
        overrides={
            "paths.runs": str(tmp_path),
            "data.phantoms.train_per_class": 8,
            "data.phantoms.test_per_class": 6,
            "data.phantoms.duplicates": 0,
            "data.val_fraction": 0.25,
            "model.modules": ["sbr"],
            "segment.compare": ["layercam@fusion"],
            "segment.network_epochs": 1,
            "segment.network_rounds": 2,
        },
    )
    from tumorlens.data.phantoms import write_phantoms

    write_phantoms(cfg.data_root, size=64, train_per_class=8, test_per_class=6, duplicates=0, seed=cfg.seed)
    run = tmp_path / "run"
    run.mkdir()
    build_classifier("efficientnet_lite0", ("sbr",), image_size=64, weights="none").save(run / "model.keras")
    summary = evaluate_segmentation(cfg, run, show_progress=False)
    out = run / "segmentation"
    assert summary["n_report"] == 9 and summary["source"].startswith("phantoms")
    for name in (
        "summary.json",
        "tuning.json",
        "per_image.csv",
        "per_image_methods.csv",
        "methods.csv",
        "segment.json",
        "segmenter.keras",
        "network.json",
        "gallery_glioma.png",
        "gallery_pituitary.png",
        "gallery_public_glioma.jpg",
        "gallery_public_meningioma.jpg",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "summary.json").read_text())
    assert saved["per_class"]["all"]["n"] == 9 and saved["model"] == str(run)
    # every map compared, each as map only and map + GrabCut; the paper's row first and flagged
    maps = [r["map"] for r in saved["methods"]]
    assert maps[:2] == ["gradcam@top"] * 2 and {"layercam@fusion", "network"} <= set(maps)
    assert [r["paper"] for r in saved["methods"]].count(True) == 1 and saved["methods"][1]["paper"]
    for r in saved["methods"]:
        assert r["n"] == 9 and r["dice_lo"] <= r["dice_mean"] <= r["dice_hi"] and r["ms_per_image"] > 0
    assert saved["methods"][1]["dice_vs_paper"] == 0  # the paper's row against itself
    assert set(saved["public_galleries"]["files"]) == {"glioma", "meningioma", "pituitary"}
    assert "CC0" in saved["public_galleries"]["source"]
    net = saved["network"]
    assert net["n_train"] == 24 and net["n_tumour"] == 18 and [r["round"] for r in net["rounds"]] == [1, 2]
    assert (
        0 <= net["rounds"][0]["tune_dice"] <= 1 and net["rounds"][1]["pseudo_masks"] == "the previous network grabcut"
    )


def test_brisc_expert_masks_are_read(tmp_path):
    from tumorlens.config import load_config as lc

    root = default_mask_root(lc("cpu"))
    if root is None:
        pytest.skip("BRISC 2025 masks not found (../shared/data/brisc2025-seg-dev or TUMORLENS_MASKS)")
    items = brisc_items(root)
    counts = {c: sum(it.cls == c for it in items) for c in ("glioma", "meningioma", "pituitary")}
    assert len(items) == 430 and counts == {"glioma": 127, "meningioma": 153, "pituitary": 150}
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        brisc_items(tmp_path)


def test_settings_that_cannot_work_fail_before_any_work(tmp_path):
    cfg = load_config("smoke", overrides={"segment.mask": "network", "segment.network": False})
    with pytest.raises(ValueError, match="segment.network is false"):
        evaluate_segmentation(cfg, tmp_path / "no-run-here", show_progress=False)
    cfg = load_config("smoke", overrides={"segment.mask": "auto", "segment.tune": False})
    with pytest.raises(ValueError, match="segment.tune is false"):
        evaluate_segmentation(cfg, tmp_path / "no-run-here", show_progress=False)


def _disc_items(n: int, size: int = 48):
    """Synthetic scans (a grey head with one bright disc) whose true-class map is a blurred copy of the
    disc, as `ItemCams`: a known answer for the tuning search."""
    from pathlib import Path

    from tumorlens.explain.ground_truth import MaskItem
    from tumorlens.explain.scoring import ItemCams

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    images, cams, truths, items = [], [], [], []
    for i in range(n):
        head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
        cy, cx, r = rng.integers(16, size - 16, 2).tolist() + [int(rng.integers(4, 8))]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img = np.where(head, 90, 0) + np.where(disc, 120, 0) + rng.normal(0, 6, (size, size)) * head
        images.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, -1))
        cam = np.exp(-((yy - cy - 2) ** 2 + (xx - cx) ** 2) / (2 * (r * 1.3) ** 2)).astype(np.float32)
        cams.append(cam / cam.max())
        truths.append(disc)
        items.append(MaskItem(Path(f"img{i:03d}.jpg"), Path(f"img{i:03d}.png"), "glioma"))
    cams = np.stack(cams)
    probs = np.tile(np.array([[1.0, 0, 0, 0]], np.float32), (n, 1))
    return ItemCams(items, np.stack(images), cams, cams, cams, probs, truths, [(size, size)] * n)


def test_grabcut_tuning_by_successive_halving_keeps_the_best_of_what_it_scores_in_full():
    ic = _disc_items(40)
    full, full_grid = tune_params(ic, ic.items, screen=1)
    halved, grid = tune_params(ic, ic.items, screen=2, keep=3)
    gc, gc_full = (
        [g for g in grid if g["step"] == "grabcut"],
        [g for g in full_grid if g["step"] == "grabcut"],
    )
    assert len(gc) == len(gc_full) == 22  # every setting screened
    assert all(g["mean_dice"] is not None for g in gc_full) and all(g["screen_dice"] is None for g in gc_full)
    scored = [g for g in gc if g["mean_dice"] is not None]
    assert len(scored) == 3 and all(g["screen_dice"] is not None for g in gc)
    # the three scored in full are the three best on the thinned part
    assert sorted(g["screen_dice"] for g in scored) == sorted(g["screen_dice"] for g in gc)[-3:]
    # the full scores do not depend on the screening, and the choice is the best of those scored in full
    by_setting = {json.dumps({k: g[k] for k in g if k not in ("screen_dice", "mean_dice")}): g for g in gc_full}
    for g in scored:
        key = json.dumps({k: g[k] for k in g if k not in ("screen_dice", "mean_dice")})
        assert g["mean_dice"] == pytest.approx(by_setting[key]["mean_dice"])
    winner = max(scored, key=lambda g: g["mean_dice"])
    assert halved.seeds == winner["seeds"] and max(g["mean_dice"] for g in gc_full) >= winner["mean_dice"] > 0.5
    # a tuning part too small to screen is searched exhaustively; bad arguments name themselves
    assert all(
        g["mean_dice"] is not None for g in tune_params(ic, ic.items[:20], screen=2)[1] if g["step"] == "grabcut"
    )
    with pytest.raises(ValueError, match="screen=0"):
        tune_params(ic, ic.items, screen=0)


def test_the_oracle_scores_reuse_the_predicted_ones_only_where_the_call_is_right():
    """A right call's true-class map is its predicted-class map, so `score_items` reuses its masks' scores;
    a wrong call's oracle masks are made from the true class's own map."""
    from dataclasses import replace

    from tumorlens.explain.weak_masks import segment
    from tumorlens.metrics.segmentation import dice

    ic = _disc_items(12)
    probs = ic.probs.copy()
    probs[::3] = [0, 0, 1.0, 0]  # a third called no tumour: empty masks for the call, the map's for the oracle
    truer = ic.cams.copy()
    truer[1::3] = np.roll(truer[1::3], 6, axis=2)  # another third: the true class's map differs (a wrong call)
    probs[1::3] = [0, 1.0, 0, 0]
    ic = replace(ic, probs=probs, cams_true=truer)
    rows = score_items(ic, params=SegmentParams())
    for i, r in enumerate(rows):
        want = segment(ic.images[i], ic.cams_true[i], "glioma", SegmentParams())
        assert r["oracle_dice_grabcut"] == pytest.approx(dice(want["grabcut"], ic.truths[i]))
        assert r["oracle_dice_cam"] == pytest.approx(dice(want["cam"], ic.truths[i]))
        if i % 3 == 0:
            assert r["dice_grabcut"] == 0.0 and r["oracle_dice_grabcut"] > 0.3
    right = [r for i, r in enumerate(rows) if i % 3 == 2]
    assert all(r["oracle_dice_grabcut"] == r["dice_grabcut"] and r["oracle_pointing"] == r["pointing"] for r in right)


def test_the_localisation_ablation_scores_each_run_alike_and_differences_them_from_the_first(tmp_path):
    """Runs of the standard head and an LSE head scored on the phantoms' masks: one row per run and map;
    the first run is the reference (no differences), a run listed twice scores exactly as the first time
    (a paired difference of 0), and each row carries its run's pooling and classification scores."""
    from tumorlens.data.phantoms import write_phantoms
    from tumorlens.explain.cam import CamSetting
    from tumorlens.explain.scoring import localisation_ablation
    from tumorlens.utils.files import write_json

    cfg = load_config(
        "smoke",
        overrides={
            "paths.runs": str(tmp_path),
            "data.phantoms.train_per_class": 4,
            "data.phantoms.test_per_class": 6,
            "data.phantoms.duplicates": 0,
            "segment.tune": False,  # tuning is tested above; here the same settings for every run
        },
    )
    write_phantoms(cfg.data_root, size=64, train_per_class=4, test_per_class=6, duplicates=0, seed=cfg.data.seed)
    runs = []
    for pooling, acc in (("gap", 0.5), ("lse", 0.75)):
        run = tmp_path / f"efficientnet_lite0@pool-{pooling}" / "seed-42"
        run.mkdir(parents=True)
        build_classifier("efficientnet_lite0", image_size=64, weights="none", pooling=pooling).save(run / "model.keras")
        summary = {"accuracy": acc, "dedup_accuracy": acc - 0.1}
        trained = cfg.override({"model.pooling": pooling}).to_dict()
        write_json(
            run / "config.json", {"config": trained, "dataset": {}, "environment": {}, "summary": summary}, schema="run"
        )
        runs.append(run)
    maps = [CamSetting("gradcam", "top"), CamSetting("layercam", "stride16")]
    rows = localisation_ablation(cfg, [runs[0], runs[1], runs[0]], maps=maps, n_boot=200, show_progress=False)
    assert [(r["run"].split("/")[0], r["map"]) for r in rows] == [
        (f"efficientnet_lite0@pool-{p}", m) for p in ("gap", "lse", "gap") for m in ("gradcam@top", "layercam@stride16")
    ]
    assert [r["pooling"] for r in rows[::2]] == ["gap", "lse", "gap"] and rows[2]["accuracy"] == 0.75
    assert rows[0]["val_macro_f1"] is None and rows[0]["source"].startswith("phantoms")  # no validation file here
    for r in rows:
        assert r["n_report"] == 9
        for key in ("pointing", "pointing_near", "dice_cam", "dice_grabcut"):
            assert 0 <= r[key]["lo"] <= r[key]["value"] <= r[key]["hi"] <= 1
    assert all(r[f"{k}_diff"] is None for r in rows[:2] for k in ("pointing", "dice_grabcut"))
    for again, first in zip(rows[4:], rows[:2]):
        assert again["dice_grabcut"] == first["dice_grabcut"] and again["pointing"] == first["pointing"]
        assert again["dice_grabcut_diff"]["diff"] == 0 and again["pointing_diff"]["diff"] == 0
    lse = rows[2]["dice_grabcut_diff"]
    assert lse["diff"] == pytest.approx(rows[2]["dice_grabcut"]["value"] - rows[0]["dice_grabcut"]["value"])
    # the localisation step: its notebook on two of these runs writes localisation.json, reading only the
    # settings it declares and writing only what it declares (the runner's checks)
    from tumorlens.experiments.grid import execute
    from tumorlens.experiments.jobs import Job
    from tumorlens.explain.run import localisation_run
    from tumorlens.utils.files import read_json

    overrides = {
        "paths.runs": str(tmp_path),
        "data.phantoms.train_per_class": 4,
        "data.phantoms.test_per_class": 6,
        "data.phantoms.duplicates": 0,
        "segment.tune": False,
        "segment.compare": [],
    }
    out = tmp_path / "localisation"
    job = Job(
        "03_localisation",
        out,
        {"profile": "smoke", "ablation_runs": [str(r) for r in runs], "run_dir": str(out), "overrides": overrides},
    )
    assert execute(job) == "ran"
    record = read_json(out / "localisation.json", schema="localisation")
    assert [r["pooling"] for r in record["rows"]] == ["gap", "gap", "lse", "lse"] and record["seconds"] >= 0
    with pytest.raises(ValueError, match="compares 2 or more runs"):
        localisation_run(cfg, runs[:1], tmp_path / "one")
