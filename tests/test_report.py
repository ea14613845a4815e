"""The book's figures and tables from tiny hand-made results: what they show, not how they look."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tumorlens.book import figures, tables
from tumorlens.config import CLASSES


def _metrics(n, f1s):
    return {
        "n": n,
        "accuracy": 0.9,
        "macro_f1": float(np.mean(f1s)),
        "per_class": {c: {"f1": f, "support": n // 4} for c, f in zip(CLASSES, f1s)},
    }


def test_per_class_f1_bars_one_trace_per_test_set():
    fig = figures.per_class_f1(
        {"official": _metrics(40, [0.9, 0.8, 1.0, 0.7]), "dedup": _metrics(8, [0.5, 0.6, 0.7, 0.8]), "empty": {"n": 0}}
    )
    assert [t.name for t in fig.data] == ["official (40 images)", "dedup (8 images)"]
    assert list(fig.data[0].y) == [0.9, 0.8, 1.0, 0.7] and len(fig.data[1].x) == 4


def test_reliability_diagram_adds_a_curve_per_calibration():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 200)
    y = probs.argmax(1)  # always right: each bin's accuracy is 1
    fig = figures.reliability_diagram(y, probs, others={"after": probs**0.5 / (probs**0.5).sum(1, keepdims=True)})
    assert [t.name for t in fig.data] == ["perfect calibration", "model", "after"]
    assert all(a == 1.0 for a in fig.data[1].y)


def test_mcnemar_p_only_on_accuracy_rows():
    row = {
        "a": "x",
        "b": "y",
        "test_set": "official",
        "n": 10,
        "value_a": 0.9,
        "value_b": 0.8,
        "diff": 0.1,
        "ci_lo": 0.0,
        "ci_hi": 0.2,
        "p_mcnemar": 0.25,
    }
    df = tables.comparisons_table([{**row, "metric": "accuracy"}, {**row, "metric": "macro_f1"}])
    assert df["McNemar p"].tolist() == ["0.25", "—"]


def test_segmentation_table_shows_pointing_and_its_baseline():
    stat = {"mean": 0.2, "median": 0.1, "q1": 0.0, "q3": 0.3}
    d = {
        "n": 5,
        "accuracy": 0.8,
        **{f"{m}_{k}": stat for m in ("dice", "iou") for k in ("cam", "grabcut")},
        "pointing": 0.2,
        "pointing_near": 0.4,
        "centre_pointing": 0.1,
        "centre_pointing_near": 0.3,
    }
    df = tables.segmentation_table({"pointing_tolerance_px": 15, "per_class": {"glioma": d, "all": d}})
    row = df.iloc[0]
    assert row["pointing game"] == "20%" and row["pointing game (≤15 px)"] == "40%"
    assert row["head-centre baseline"] == "10%" and row["head-centre baseline (≤15 px)"] == "30%"


def test_book_pages_lose_tensorflow_start_up_chatter_but_keep_real_stderr():
    import nbformat

    from tumorlens.book.build import _drop_tf_noise

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text=(
                "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                "I0000 00:00:1795812997.820942    5155 cudart_stub.cc:31] "
                "Could not find cuda drivers on your machine.\n"
            ),
        ),
        nbformat.v4.new_output(
            "stream", name="stderr", text="E0000 00:00:1.2    5 x.cc:52] cuInit\nscan: 1 bad file\n"
        ),
        nbformat.v4.new_output("stream", name="stdout", text="I0000 00:00:1.2    5 x.cc:52] printed on purpose\n"),
    ]
    nb.cells.append(cell)
    _drop_tf_noise(nb)
    assert [o.get("text") for o in nb.cells[0].outputs] == [
        "scan: 1 bad file\n",
        "I0000 00:00:1.2    5 x.cc:52] printed on purpose\n",
    ]


def test_robustness_frame_has_the_clean_value_on_every_row():
    rows = [
        {"kind": "clean", "severity": 0, "test_set": "official", "accuracy": 0.9},
        {"kind": "blur", "severity": 1, "test_set": "official", "accuracy": 0.8},
        {"kind": "blur", "severity": 2, "test_set": "official", "accuracy": 0.7},
        {"kind": "noise", "severity": 1, "test_set": "official", "accuracy": 0.6},
        {"kind": "noise", "severity": 2, "test_set": "official", "accuracy": 0.5},
        {"kind": "blur", "severity": 1, "test_set": "dedup", "accuracy": 0.1},
    ]
    df = tables.robustness_frame(rows, "official")
    assert list(df.columns) == ["clean", "severity 1", "severity 2"] and list(df.index) == ["blur", "noise"]
    assert df["clean"].tolist() == [0.9, 0.9] and df.loc["noise", "severity 2"] == 0.5


def test_targets_and_claims_come_from_the_measured_results():
    from tumorlens.book.text import diff_text, module_cost_claim
    from tumorlens.config import load_config
    from tumorlens.experiments.collect import targets

    rq = {
        "runs": {
            "a/seed-1": {"official_accuracy": 0.95, "official_macro_f1": 0.94},
            "a@views/seed-1": {"official_accuracy": 0.999, "official_macro_f1": 0.999},  # an ablation: not a system
        },
        "rq2": {"systems": {"soft voting": {"official": {"accuracy": 0.991, "macro_f1": 0.989}}}},
    }
    t = targets(rq, {"total_minutes": 59.0, "jobs": [1, 2]}, load_config("cpu"))
    assert t["accuracy"]["best"] == "soft voting" and not t["accuracy"]["met"]  # macro-F1 below 0.99
    assert t["minutes"]["met"] and t["minutes"]["jobs"] == 2
    # an uninterrupted headline run judges the target while none of its jobs ran again; after that, the
    # headline part's summed notebook times do
    e2e = {"part": "headline", "minutes": 29.0, "jobs_rerun_since": []}
    timing = {"total_minutes": 115.0, "jobs": [1], "part_minutes": {"headline": 65.0}, "end_to_end": e2e}
    t = targets(rq, timing, load_config("cpu"))["minutes"]
    assert t["met"] and t["judged_minutes"] == 29.0 and "uninterrupted" in t["basis"]
    timing["end_to_end"] = e2e | {"jobs_rerun_since": ["efficientnet_lite1/seed-42"]}
    t = targets(rq, timing, load_config("cpu"))["minutes"]
    assert not t["met"] and t["judged_minutes"] == 65.0 and "summed" in t["basis"]
    blocks = [
        {"backbone": "b", "block": k, "parameters": n} for k, n in (("se", 10), ("cbam", 12), ("mab", 40), ("sbr", 3))
    ]
    claim = module_cost_claim(blocks, "b")
    assert "MAB has 40 parameters — not fewer than" in claim and "SBR has 3 parameters — fewer than" in claim
    assert module_cost_claim(blocks, "other") == "not measured"
    row = {"diff": 0.0099, "ci_lo": 0.004, "ci_hi": 0.017, "p_mcnemar": 0.0023}
    assert diff_text(row, p=True) == "+0.0099 [+0.004, +0.017], McNemar p = 0.0023" and diff_text(None) == "n/a"


def test_method_table_figure_and_words_come_from_the_explain_summary():
    from tumorlens.book.text import explain_glue, rq3_words
    from tumorlens.explain.scoring import method_table, summarise

    def rows(d, p):
        return [
            {
                "id": f"i{k}",
                "class": "glioma" if k % 2 else "pituitary",
                "correct": True,
                "dice_cam": d,
                "iou_cam": d / 2,
                "dice_grabcut": d + 0.1,
                "iou_grabcut": d / 2,
                "pointing": p,
                "pointing_near": p,
                "centre_pointing": k < 5,
                "centre_pointing_near": k < 5,
            }
            for k in range(20)
        ]

    per_map = {"gradcam@top": rows(0.1, False), "network": rows(0.5, True)}
    table = method_table(
        per_map,
        tune_scores={m: {"cam": 0.1, "grabcut": 0.2} for m in per_map},
        latency_ms={m: {"cam": 40.0, "grabcut": 90.0} for m in per_map},
    )
    summary = {
        "source": "BRISC 2025 expert masks (test)",
        "model": "runs/x",
        "n_report": 20,
        "n_tune": 20,
        "pointing_tolerance_px": 15,
        "map": "network",
        "mask": "cam",
        "methods": table,
        "per_class": summarise(per_map["network"]),
        "best_on_tuning": {"map": "network", "mask": "grabcut", "tune_dice": 0.2},
        "network": None,
    }
    frame = tables.methods_table(table)
    assert len(frame) == 4 and frame.iloc[1]["Dice vs paper [95% CI]"] == "reference"
    assert frame.iloc[2]["Dice mean [95% CI]"].startswith("0.500") and frame.iloc[2]["ms / image"] == 40
    assert len(figures.method_dice(table).data) == 2
    words = explain_glue(summary)
    assert words["adopted"] == "network, binarised" and words["adopted_dice"].startswith("0.500")
    assert words["adopted_vs_paper"].startswith("+0.300") and words["paper_pointing"] == "0%"
    assert words["adopted_pointing"].startswith("100% [") and words["centre_pointing"] == "25%"
    assert words["adopted_pointing_vs_centre"].startswith("+75 points [")
    assert "refined by GrabCut" in words["best_on_tuning"]
    rq3 = rq3_words({"summary": summary, "grabcut_minus_cam": {"mean_diff": 0.1, "lo": 0.1, "hi": 0.1}})
    assert rq3["verdict"] == "GrabCut helps" and rq3["adopted_dice"] == words["adopted_dice"]
    empty = rq3_words(None)
    assert empty["seg_source"] == "not measured" and set(empty) == set(rq3)
    # the network's training in words: per-class maps and each self-training round's pseudo-masks
    from tumorlens.book.text import network_rounds_words

    net = {
        "per_class": True,
        "rounds": [
            {
                "round": 1,
                "pseudo_masks": "layercam@fusion grabcut",
                "pseudo_mask_area": 0.078,
                "n_empty_pseudo_masks": 1,
                "tune_dice": 0.478,
            },
            {
                "round": 2,
                "pseudo_masks": "the previous network grabcut",
                "pseudo_mask_area": 0.041,
                "n_empty_pseudo_masks": 21,
            },
        ],
    }
    w = network_rounds_words(net)
    assert w.startswith("one map per tumour class, 2 rounds of self-training")
    assert (
        "round 2 learned the previous network grabcut (tuning-half Dice 0.478): 4.1% of a tumour image, 21 empty" in w
    )
    assert network_rounds_words({"rounds": net["rounds"][:1]}) == "one class-agnostic map, one round (no self-training)"


def test_data_figures_are_rendered_for_a_book_without_the_dataset(tmp_path, phantom_root):
    import cv2
    import pytest

    from tumorlens.book.snapshots import image_sheet, write_data_figures
    from tumorlens.config import load_config
    from tumorlens.data import prepare

    sheet = image_sheet([np.zeros((20, 30), np.uint8)] * 5, [f"t{i}" for i in range(5)], cols=4, tile=32)
    assert sheet.shape == (2 * (18 + 32), 4 * 32, 3) and sheet.dtype == np.uint8
    with pytest.raises(ValueError, match="one title per image"):
        image_sheet([np.zeros((4, 4, 3), np.uint8)], [])
    cfg = load_config("smoke", overrides={"data.root": str(phantom_root), "data.val_fraction": 0.25})
    prep = prepare(cfg, show_progress=False)
    files = write_data_figures(prep, cfg, prep.audit.to_dict(), tmp_path / "figures", seed=1)
    assert {"examples.jpg", "augmentation.jpg"} <= set(files)
    ex = cv2.imread(str(tmp_path / "figures" / "examples.jpg"))
    assert ex.shape[:2] == (4 * (18 + 128), 4 * 128)  # four classes x four images
    if prep.audit.to_dict().get("examples"):  # the phantoms plant duplicates: their pairs are drawn
        assert (tmp_path / "figures" / "duplicates.jpg").is_file()


def _glued(nb_path) -> dict[str, str]:
    """The values a notebook glued (MyST-NB), by name, as the text the book shows."""
    import nbformat

    out = {}
    for cell in nbformat.read(nb_path, as_version=4).cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                text = next(v for k, v in o["data"].items() if k.endswith("text/plain"))
                out[name] = text.strip("'\"")
    return out


def test_the_data_chapter_built_from_the_published_results_glues_their_counts(tmp_path):
    """The data page of the cpu book, built from the committed results alone: its glued counts are the
    file's (and, where the dataset is present, the single-channel count is a current scan's)."""
    import nbformat

    from tumorlens.data.prepared import read_data_step
    from tumorlens.experiments.runner import book_pages, execute

    res = Path(__file__).resolve().parents[1] / "results" / "cpu"
    if not (res / "data").is_dir():
        pytest.skip("no published cpu results in this checkout")
    job = next(j for j in book_pages("cpu", res, tmp_path) if j.page == "01_data")
    job.params["data_root"] = str(tmp_path / "no-dataset-here")  # as a reader's machine: results only
    execute(job, force=True)
    glued = _glued(job.output)
    step = read_data_step(res / "data")
    assert glued["n_images"] == str(step["scan"]["n_images"])
    assert glued["n_single_channel"] == str(step["scan"]["channels"]["single-channel"])
    assert glued["n_testing_with_copy"] == str(step["audit"]["testing_vs_training"]["total"]["any_in_training"])
    assert glued["dataset_fingerprint"] == step["scan"]["dataset"]["fingerprint"]
    outputs = [o for c in nbformat.read(job.output, as_version=4).cells for o in c.get("outputs", [])]
    shown = "".join(o.get("text", "") for o in outputs)
    assert "not available" not in shown  # the published figures, not a notice
    assert sum("image/jpeg" in o.get("data", {}) for o in outputs) >= 3
    real = os.environ.get("TUMORLENS_DATA") or str(Path(__file__).resolve().parents[2] / "shared/data/brain-tumor-mri")
    if Path(real, "Training").is_dir():  # the published count is the one a scan of the dataset finds today
        from tumorlens.data.inventory import scan

        report = scan(real, show_progress=False)
        assert report.modes["single-channel"] == step["scan"]["channels"]["single-channel"]
        assert report.dataset() == step["scan"]["dataset"]


def test_the_localisation_ablation_in_words_and_as_a_table():
    from tumorlens.book.tables import localisation_table
    from tumorlens.book.text import localisation_words

    def ci(v):
        return {"value": v, "lo": v - 0.05, "hi": v + 0.05, "n": 200}

    def row(pooling, mp, acc, point, dice, ref=None):
        diff = (lambda a, b: {"diff": a - b, "lo": a - b - 0.02, "hi": a - b + 0.02, "n": 200}) if ref else None
        return {
            "run": f"efficientnet_lite0{'' if pooling == 'gap' else '@pool-' + pooling}/seed-42",
            "pooling": pooling,
            "map": mp,
            "n_report": 215,
            "accuracy": acc,
            "dedup_accuracy": acc - 0.05,
            "val_macro_f1": None,
            "pointing": ci(point),
            "pointing_near": ci(point),
            "dice_cam": ci(dice - 0.1),
            "dice_grabcut": ci(dice),
            "pointing_diff": diff(point, ref[0]) if ref else None,
            "pointing_near_diff": diff(point, ref[0]) if ref else None,
            "dice_cam_diff": diff(dice, ref[1]) if ref else None,
            "dice_grabcut_diff": diff(dice, ref[1]) if ref else None,
        }

    rows = [
        row("gap", "gradcam@top", 0.97, 0.2, 0.1),
        row("gap", "layercam@fusion", 0.97, 0.6, 0.45),
        row("lse", "gradcam@top", 0.955, 0.3, 0.15, ref=(0.2, 0.1)),
        row("lse", "layercam@fusion", 0.955, 0.65, 0.40, ref=(0.6, 0.45)),
    ]
    words = localisation_words({"rows": rows}, "layercam@fusion")
    assert words.startswith("With layercam@fusion on the 215 report images, the log-sum-exp head")
    assert "official accuracy 0.9550 (standard 0.9700; more than 0.5 points lower)" in words
    assert "pointing 65% vs 60% (+5 points [+3, +7])" in words
    assert "0.400 vs 0.450 (-0.050 [-0.070, -0.030]: worse)" in words and words.endswith("the standard head stays.")
    rows[3] = row("lse", "layercam@fusion", 0.968, 0.65, 0.50, ref=(0.6, 0.45))  # better and accuracy kept
    assert localisation_words({"rows": rows}, "layercam@fusion").endswith("accuracy kept): log-sum-exp.")
    assert localisation_words(None).startswith("not measured")
    table = localisation_table(rows)
    assert table.shape[0] == 4 and table.iloc[0]["Dice + GrabCut vs reference"] == "reference"
    assert table.iloc[3]["pointing vs reference"] == "+5 points [+3, +7]"


def test_the_ablation_runs_on_the_external_set_in_words():
    from tumorlens.book.pages import external_ablation_words

    def m(acc, nt):
        return {
            "brisc": {
                "n": 500,
                "accuracy": acc,
                "accuracy_lo": acc - 0.03,
                "accuracy_hi": acc + 0.02,
                "notumor_recall": nt,
            }
        }

    ext = {
        "runs": {
            "lite/seed-42": m(0.906, 0.83),
            "lite@intensity/seed-42": m(0.93, 0.9),
            "lite@pool-topk/seed-42": m(0.88, None),
            "lite@intensity/seed-43": m(0.5, 0.1),  # another seed: not the comparison
        }
    }
    words = external_ablation_words(ext, "lite", 42)
    assert words == (
        "the standard run (seed 42) accuracy 0.906 [0.876, 0.926], no-tumour recall 0.83 on brisc; "
        "trained with intensity remapping: accuracy 0.930 [0.900, 0.950], no-tumour recall 0.90; "
        "with a top-k head: accuracy 0.880 [0.850, 0.900], no-tumour recall n/a"
    )
    assert external_ablation_words(None, "lite", 42).startswith("not measured")
    assert external_ablation_words({"runs": {"lite/seed-42": m(0.9, 0.8)}}, "lite", 42).startswith("no ablation")


def test_a_book_page_keeps_no_path_of_the_machine_that_built_it(tmp_path):
    import nbformat

    from tumorlens.book.build import _copy_page

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Old title\ntext"), nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["papermill"] = {
        "input_path": str(tmp_path / "a" / "source.ipynb"),
        "output_path": str(tmp_path / "b.ipynb"),
    }
    nbformat.write(nb, tmp_path / "in.ipynb")
    _copy_page(tmp_path / "in.ipynb", tmp_path / "page.ipynb", "New title")
    text = (tmp_path / "page.ipynb").read_text()
    assert str(tmp_path) not in text
    page = nbformat.read(tmp_path / "page.ipynb", as_version=4)
    assert page.metadata["papermill"]["input_path"] == "source.ipynb" and page.cells[0].source.startswith("# New title")
    assert "hide-input" in page.cells[1].metadata["tags"]


def test_a_captioned_table_keeps_the_book_table_style():
    import pandas as pd

    html = tables.captioned(
        pd.DataFrame({"accuracy": [0.97561234]}, index=["soft voting"]), "Official test split"
    ).to_html()
    assert "Official test split" in html and 'class="dataframe tl-table"' in html and "0.9756<" in html


def test_the_explain_step_over_seeds_as_rows_words_and_a_table(tmp_path):
    """``rq.json["rq3"]["seeds"]``: each explain run's adopted row, its GrabCut - map difference from its
    own per-image scores, and the sentence that says how many seeds reach the target."""
    import csv

    from tumorlens.book.text import explain_seeds_words
    from tumorlens.experiments.rq import explain_seed_row
    from tumorlens.explain.scoring import method_table
    from tumorlens.metrics.stats import seed_summary
    from tumorlens.utils.files import write_json

    def explained(folder, seed, dice):
        per = [
            {"id": f"i{k}", "class": "glioma", "correct": True, "dice_cam": dice - 0.1, "iou_cam": 0.1}
            | {"dice_grabcut": dice, "iou_grabcut": 0.1, "pointing": k < 15, "pointing_near": True}
            | {"centre_pointing": k < 2, "centre_pointing_near": k < 2}
            for k in range(20)
        ]
        paper = [r | {"dice_cam": 0.1, "dice_grabcut": 0.12} for r in per]
        methods = method_table({"gradcam@top": paper, "network": per}, tune_scores={}, latency_ms={})
        folder.mkdir(parents=True)
        summary = {"model": f"runs/cpu/efficientnet_lite1/seed-{seed}", "map": "network", "mask": "grabcut"}
        summary |= {"n_report": 20, "params": {}, "per_class": {}}
        write_json(folder / "summary.json", summary | {"methods": methods}, schema="segmentation")
        with open(folder / "per_image.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(per[0]))
            w.writeheader()
            w.writerows(per)
        return folder / "summary.json"

    runs = {"efficientnet_lite1/seed-43": {"metrics": {"official": {"accuracy": 0.97}}}}
    rows = [
        explain_seed_row(explained(tmp_path / "main", 43, 0.55), runs, n_boot=200),
        explain_seed_row(explained(tmp_path / "s44", 44, 0.45), runs, n_boot=200),
    ]
    assert [r["seed"] for r in rows] == [43, 44] and rows[0]["model"] == "efficientnet_lite1/seed-43"
    assert rows[0]["adopted"] == "network, map + GrabCut" and rows[0]["official_accuracy"] == 0.97
    assert rows[1]["official_accuracy"] is None
    assert rows[0]["dice_mean"] == pytest.approx(0.55) and rows[0]["map_only_dice"] == pytest.approx(0.45)
    assert rows[0]["gc_minus_map"] == pytest.approx(0.1) and rows[0]["gc_minus_map_lo"] == pytest.approx(0.1)
    assert rows[0]["paper_dice"] == pytest.approx(0.12) and rows[0]["pointing"] == 0.75
    seeds = {"rows": rows} | {k: seed_summary([r[k] for r in rows]) for k in ("dice_mean", "pointing")}
    words = explain_seeds_words(seeds)
    assert words.startswith("Over 2 seeds of efficientnet_lite1 the adopted mask scores Dice seed 43 0.550")
    assert "seed 43 0.550, seed 44 0.450 (mean 0.500 ± 0.071); 1 of 2 reach 0.50" in words
    assert "lowest interval starts at 0.450 (seed 44)" in words and "on 2 of 2 seeds" in words
    assert explain_seeds_words(None).startswith("not measured")
    frame = tables.explain_seeds_table(rows)
    assert list(frame.index) == [43, 44] and frame.loc[44, "official accuracy"] == "—"
    assert frame.loc[43, "GrabCut − map [95% CI]"].startswith("+0.100") and frame.loc[43, "pointing"] == "75%"


def test_the_inversion_ablation_in_words():
    from tumorlens.book.pages import inversion_words

    def row(v, ts, mean, sd, n=3):
        return {"variant": v, "test_set": ts, "metric": "accuracy", "mean": mean, "sd": sd, "n": n}

    std, inv = "efficientnet_lite0", "efficientnet_lite0@invert"
    rq = {
        "inversion": {
            "variants": [std, inv],
            "seeds_table": [row(std, "official", 0.97, 0.01), row(inv, "official", 0.96, 0.02)]
            + [row(std, "external", 0.91, 0.02), row(inv, "external", 0.93, 0.01)],
        },
        "runs": {f"{inv}/seed-{s}": {"external_notumor_recall": r} for s, r in ((42, 0.9), (43, 0.8))},
    }
    words = inversion_words(rq)
    assert words.startswith("efficientnet_lite0 (3 seeds): official 0.9700 ± 0.0100, external 0.9100 ± 0.0200;")
    assert words.endswith(
        "@invert (3 seeds): official 0.9600 ± 0.0200, external 0.9300 ± 0.0100, external no-tumour "
        "recall 0.85 (per seed 0.90, 0.80)"
    )
    assert inversion_words({}).startswith("not run")


# ---------------------------------------------------------------------------------------- the book as a paper
RESULTS = Path(__file__).resolve().parents[1] / "results" / "cpu"


def test_a_book_table_has_no_index_no_nan_and_formatted_numbers():
    import pandas as pd

    frame = pd.DataFrame({"images": [930308.0, float("nan")], "accuracy": [0.97561234, 1.0], "m": ["macro_f1", "x"]})
    html = tables.show(frame, caption="c").to_html()
    assert ">NaN<" not in html and ">nan<" not in html and ">—<" in html and "not measured or not applicable" in html
    assert ">930,308<" in html and "930308.0" not in html and ">0.9756<" in html and ">1.0000<" in html
    assert ">0<" not in html and ">1<" not in html  # no 0, 1, ... index column
    assert ">macro-F1<" in html  # the files' spelling, as the book prints it
    named = tables.show(frame.set_index(pd.Index(["a", "b"], name="run"))).to_html()
    assert "<th" in named and ">run<" in named and ">a<" in named  # a named index is an ordinary column
    same = pd.DataFrame({"a": list("wxyz"), "vs": ["std"] * 4, "diff": [0.1, 0.2, 0.3, 0.4]})
    assert "In every row: vs std." in tables.show(same).to_html()  # a constant text column said once


def test_figures_load_no_script_from_the_network(tmp_path):
    import plotly.graph_objects as go
    import plotly.io as pio

    from tumorlens.book.build import remote_scripts

    figures.setup_plotly()
    bundle = pio.renderers[figures.RENDERER].to_mimebundle(go.Figure(go.Bar(y=[1, 2])).to_dict())
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "cdn.plot.ly" not in html and "https://" not in html
    assert "require" not in html and "import(" not in html and "application/vnd.plotly.v1+json" in bundle
    (tmp_path / "bad.html").write_text(
        '<script src="https://cdn.plot.ly/plotly-4.1.1.min.js"></script><script type="module">'
        'import("https://cdn.plot.ly/plotly-4.1.1.min.js")</script>'
    )
    (tmp_path / "good.html").write_text(f'<script src="_static/plotly.min.js"></script>{html}')
    found = remote_scripts(tmp_path)
    assert [p for p, _ in found] == ["bad.html", "bad.html"]


def test_mathjax_is_served_from_the_book_itself(tmp_path):
    import yaml

    from tumorlens.book.build import copy_static

    copy_static(tmp_path / "_static", tmp_path / "_extra", strict=True)
    assert (tmp_path / "_static" / "plotly.min.js").is_file()
    assert (tmp_path / "_extra" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert any((tmp_path / "_extra" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").iterdir())
    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "book" / "_config.yml").read_text())["sphinx"][
        "config"
    ]
    assert conf["mathjax_path"] == "../mathjax/tex-mml-chtml.js" and conf["html_extra_path"] == ["_extra"]


def test_a_book_page_collapses_printed_json_and_spells_no_tumour_once(tmp_path):
    import nbformat

    from tumorlens.book.build import _copy_page

    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(json.dumps(summary))")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text='{"parameters": 5, "cut": {"layer": "x"}}\n')]
    nb.cells = [nbformat.v4.new_markdown_cell("# T\nthe no-tumour slices"), code]
    nbformat.write(nb, tmp_path / "in.ipynb")
    _copy_page(tmp_path / "in.ipynb", tmp_path / "page.ipynb", None)
    page = nbformat.read(tmp_path / "page.ipynb", as_version=4)
    assert page.cells[0].source == "# T\nthe no tumour slices"
    out = page.cells[1].outputs[0]
    assert out["output_type"] == "display_data" and "<details" in out["data"]["text/html"]
    assert "cut" in out["data"]["text/html"] and "layer: x" in out["data"]["text/html"]


@pytest.mark.skipif(not (RESULTS / "rq.json").is_file(), reason="no published cpu results in this checkout")
def test_the_conclusion_answers_every_research_question_with_a_number_and_an_interval():
    import json

    from tumorlens.book import pages

    words = pages.conclusion_glue(RESULTS, "cpu")
    answered = ("rq1", "rq2", "rq3", "rq4", "rq5", "ext") + (("lesion",) if (RESULTS / "lesion.json").is_file() else ())
    for q in answered:
        line = words[f"concl_{q}"]
        assert "[" in line and "]" in line and "not measured" not in line, (q, line)
    concl = (RESULTS.parents[1] / "book" / "conclusion.md").read_text()
    for q in ("rq1", "rq2", "rq3", "rq4", "rq5", "lesion", "ext"):
        assert f"generated/06_results.ipynb::concl_{q}:s" in concl
    toc = (RESULTS.parents[1] / "book" / "_toc.yml").read_text()
    assert "conclusion" in toc and "generated/07_external" in toc and "generated/08_interpretability" in toc
    single = json.loads((RESULTS.parents[1] / "models" / "cpu" / "models.json").read_text())["single"]
    pub = pages.published_model_glue(RESULTS, "cpu")
    assert (
        pub["pub_single"] == single
        and "generated/06_results.ipynb::pub_single_words:s" in (RESULTS.parents[1] / "book" / "intro.md").read_text()
    )


@pytest.mark.skipif(not (RESULTS / "data" / "brisc_overlap.json").is_file(), reason="no cross-release audit")
def test_the_cross_release_audit_record_and_its_words():
    from tumorlens.book import pages

    ovl = pages.read_overlap(RESULTS)
    s = ovl["sets"][0]
    t = s["total"]
    assert t["any"] + t["kept"] == t["n"] == s["n_images"] and len(s["with_copy"]) == t["any"]
    assert all(w["kind"] in ("exact", "near") and w["training"].startswith("Training/") for w in s["with_copy"])
    for system in s["systems"].values():
        assert system["all"]["n"] == t["n"] and system["no_copy"]["n"] == t["kept"]
    assert s["predictions_match_external_json"]
    words = pages.overlap_glue(ovl)
    assert f"on the {t['kept']} images with no copy in Training" in words["ovl_single_nocopy"]


def test_cross_pairs_find_copies_between_two_sets_by_the_audit_rule():
    import numpy as np

    from tumorlens.data.leakage import Fingerprints, cross_pairs

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    a = Fingerprints(["x", "y", "z"], np.array([0, 0b1111, 2**40], np.uint64), base)
    other = np.stack([base[0], -base[1], base[2] * 0.99 + 0.01 * base[0]])
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    b = Fingerprints(["q", "y", "r"], np.array([1, 0b1111, 2**40], np.uint64), other.astype(np.float32))
    pairs = cross_pairs(a, b, hash_distance=2, correlation=0.9)
    assert [(i, j, k) for i, j, k, *_ in pairs] == [(0, 0, "near"), (1, 1, "exact"), (2, 2, "near")]


def test_the_duplicates_figure_shows_each_testing_image_once_beside_a_same_class_copy():
    from tumorlens.data.inventory import ImageRecord
    from tumorlens.data.leakage import AuditReport
    from tumorlens.experiments.figures import duplicate_copies

    def rec(split, cls, k):
        return ImageRecord(f"{split}/{cls}/{k}.jpg", split, cls, "/d")

    recs = [rec("Testing", "glioma", 0), rec("Training", "glioma", 1), rec("Training", "meningioma", 2)]
    recs += [rec("Testing", "notumor", 3), rec("Training", "notumor", 4), rec("Training", "notumor", 5)]
    pairs = [(0, 1, "near", 6, 0.93), (0, 2, "near", 2, 0.99), (3, 4, "near", 4, 0.95), (3, 5, "exact", 0, 1.0)]
    copies = duplicate_copies(AuditReport("/d", {}, recs, pairs), n=6)
    assert [(c["a"], c["b"], c["kind"]) for c in copies] == [
        ("Testing/notumor/3.jpg", "Training/notumor/5.jpg", "exact"),  # exact copies first
        ("Testing/glioma/0.jpg", "Training/glioma/1.jpg", "near"),  # the same class, not the closer look-alike
    ]


@pytest.mark.skipif(not (RESULTS / "manifest.json").is_file(), reason="no published cpu results in this checkout")
@pytest.mark.full
def test_the_cpu_book_builds_from_a_clone_without_the_data_and_reads_as_a_paper(tmp_path):
    """The online book: a clone of this checkout's HEAD with no ``../shared`` beside it and no dataset
    anywhere builds strictly from the committed results; its pages show every figure (galleries included),
    load no script from the network, print no NaN and no index column, and hold an external-validation
    chapter and a conclusion that answers every research question. About 2-3 minutes (ten pages).

    Fast counterparts: test_the_data_chapter_built_from_the_published_results_glues_their_counts (a cpu
    book page executed from the committed results with no dataset), test_figures_load_no_script_from_the_network,
    test_a_book_table_has_no_index_no_nan_and_formatted_numbers,
    test_the_conclusion_answers_every_research_question_with_a_number_and_an_interval,
    test_the_published_lesion_test_reads_as_the_book_says, and make test's strict smoke book (every page
    built with warnings as errors)."""
    import re
    import subprocess
    import sys

    repo = RESULTS.parents[1]
    clone = tmp_path / "reader" / "tumorlens"  # tmp_path/reader/shared does not exist
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMORLENS_")}
    env |= {
        "PYTHONPATH": str(clone / "lib"),  # the clone's package, not the development install
        "TUMORLENS_DATA": str(tmp_path / "no-dataset"),
        "TUMORLENS_CACHE": str(tmp_path / "cache"),
    }
    res = subprocess.run(
        [sys.executable, "-m", "tumorlens.cli", "book", "--profile", "cpu", "--strict", "--no-run"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "book: page 1/" in res.stderr and "left" in res.stderr  # progress, not silence
    assert "Traceback" not in res.stderr and "Event loop is closed" not in res.stderr
    html = clone / "book" / "_build" / "html"
    pages = {p.relative_to(html).as_posix(): p.read_text() for p in html.rglob("*.html")}
    text = "\n".join(pages.values())
    import nbformat

    shown = []  # what a reader sees of the executed pages: prose and outputs (not the hidden code)
    for nb_file in (clone / "book" / "generated").glob("*.ipynb"):
        for cell in nbformat.read(nb_file, as_version=4).cells:
            shown.append(cell.source if cell.cell_type == "markdown" else "")
            for o in cell.get("outputs", []):
                shown += [o.get("text", ""), *(v for v in o.get("data", {}).values() if isinstance(v, str))]
    shown = "\n".join(shown)
    assert "not available" not in shown and "not on this machine" not in shown and "No expert-mask" not in shown
    assert not re.search(r"<script[^>]*src=[\"']https?://", text) and "cdn.plot.ly" not in text
    assert ">NaN<" not in text and ">nan<" not in text
    assert not re.search(r"<th[^>]*>\s*</th>", text)  # no unnamed (index) column
    interp = pages["generated/08_interpretability.html"]
    assert interp.count("<img") >= 6  # public galleries and the expert-mask galleries, from the results
    ext = pages["generated/07_external.html"]
    assert "no copy in Training" in ext and "External validation" in ext
    concl = pages["conclusion.html"]
    for q in ("RQ1", "RQ2", "RQ3", "RQ4", "RQ5", "RQ6"):
        assert q in concl
    assert concl.count("[") >= 14  # every answer with its interval
    if (repo / "results" / "cpu" / "lesion.json").is_file():  # the lesion-removal test, its tables and figure
        assert "lesion-removal test" in interp and "Lesion removed → called no tumour" in interp
        assert "Not yet measured" not in shown  # what the pages print (the code cells hold the fallback text)
    assert "input guard" in ext and "not been measured" not in shown  # printed, not the hidden fallback code
    single = json.loads((repo / "models" / "cpu" / "models.json").read_text())["single"]
    from tumorlens.book.pages import run_words

    assert run_words(single) in pages["intro.html"]  # the abstract names the model of models.json


def test_every_glued_word_of_the_overlap_exists_without_a_record():
    from tumorlens.book import pages

    words = pages.overlap_glue(None)
    assert set(words) == set(pages.OVERLAP_KEYS) and all(v.startswith("not measured") for v in words.values())
    if (RESULTS / "data" / "brisc_overlap.json").is_file():
        assert set(pages.overlap_glue(pages.read_overlap(RESULTS))) == set(pages.OVERLAP_KEYS)


def _wilson(k, n):
    from tumorlens.evaluation.lesion import wilson

    return wilson(k, n)


def _lesion_scores(removed, control, kept, n=40, n_control=38, methods=("telea", "ring")):
    """One model's ``lesion.json`` entry with the same counts in every group (hand-made)."""
    group = {"original": {"notumor": _wilson(0, n), "correct": _wilson(n - 2, n)}}
    for i, f in enumerate(methods):
        group[f] = {
            "removed_notumor": _wilson(removed + i, n),
            "control_notumor": _wilson(control, n_control),
            "control_kept": _wilson(kept, n_control),
            "control_unchanged": _wilson(kept, n_control),
        }
    return {
        "n": n,
        "n_control": n_control,
        "methods": list(methods),
        "overall": group,
        "per_class": {"glioma": group, "pituitary": group},
        "per_view": {"ax": group, "sa": group},
    }


def test_the_lesion_removal_test_in_words_and_tables():
    from tumorlens.book import lesion as L

    none = L.lesion_glue(None, "m/seed-1")
    assert set(none) == set(L.LESION_KEYS) and all(v.startswith("not measured") for v in none.values())
    rec = {
        "set": {"name": "brisc2025-seg-dev", "n": 40, "image_size": 240},
        "dilation": 0.03,
        "methods": ["telea", "ring"],
        "models": {
            "published: efficientnet_lite1/seed-43": _lesion_scores(2, 0, 36),
            "published: efficientnet_lite0/seed-44": _lesion_scores(1, 1, 35),
            "published soft voting: efficientnet_lite1/seed-43 + efficientnet_lite0/seed-44": _lesion_scores(1, 0, 36),
            "efficientnet_lite1@cf-gin/seed-43": _lesion_scores(20, 1, 30),  # a study run: not a published row
        },
        "validation": {"n": 30, "keep": 0.5, "filter": "p_in", "dilation": 0.05, "methods": ["telea"], "models": {}},
    }
    w = L.lesion_glue(rec, "efficientnet_lite1/seed-43")
    assert set(w) == set(L.LESION_KEYS)
    assert w["les_removed_telea"] == "5.0% [1.4, 16.5]" and w["les_still_telea"] == "95.0% [83.5, 98.6]"
    assert w["les_verdict"] == "No" and w["les_model"] == "EfficientNet-Lite1, seed 43"
    assert "95.0% [83.5, 98.6] of the 40 BRISC tumour scans a tumour" in w["concl_lesion"]
    assert w["les_removed_ns"].startswith("not measured")  # a fill the record lacks
    assert w["les_val_summary"].startswith("not measured")  # no published model in the validation block
    tabs = L.lesion_rates_tables(rec, "efficientnet_lite1/seed-43")
    assert [c.split(" (")[0] for c, _ in tabs] == list(L.CAPTIONS.values())
    removed = tabs[0][1]
    assert list(removed.columns) == ["model", "Telea", "ring fill"]
    assert removed["model"].tolist() == [
        "single model: EfficientNet-Lite1, seed 43",
        "member: EfficientNet-Lite0, seed 44",
        "soft-voting ensemble (2 members)",
    ]  # the study run is left out; the single model first
    assert "40 scans" in tabs[0][0] and "38 scans with a control" in tabs[1][0]
    groups = L.lesion_groups_tables(rec["models"]["published: efficientnet_lite1/seed-43"])
    assert groups[0][1]["class or view"].tolist() == ["glioma", "pituitary", "axial", "sagittal"]
    html = tables.show(removed).to_html()
    assert "NaN" not in html and "<th" in html and not __import__("re").search(r"<th[^>]*>\s*</th>", html)


def test_the_lesion_study_in_words_and_tables():
    from tumorlens.book import lesion as L

    missing = L.study_glue(None)
    assert set(missing) == set(L.STUDY_KEYS) and all(v.startswith("not yet collected") for v in missing.values())
    base = {"model": "efficientnet_lite1/seed-43", "tag": "published recipe", "val_accuracy": 0.97, "seed": 43}
    row = {"model": "efficientnet_lite1@cf-gin/seed-43", "tag": "cf-gin", "val_accuracy": 0.965, "seed": 43}
    other = {**row, "model": "efficientnet_lite1@cf-gin/seed-42", "seed": 42}
    for r, removed in ((base, 0.02), (row, 0.43), (other, 0.49)):
        r |= {"official_accuracy": 0.97, "removed_notumor_telea": removed, "control_notumor_telea": 0.01}
        r |= {"val_removed_notumor_telea": removed, "val_control_notumor_telea": 0.0}
    study = {
        "baseline": base["model"],
        "methods": ["telea"],
        "rule": {"max_val_accuracy_drop": 0.01, "max_val_control_notumor": 0.05},
        "rows": [base, row, other],
        "qualified": ["efficientnet_lite1@cf-gin/seed-43"],
        "choice": "cf-gin",
    }
    w = L.study_glue(study)
    assert "at most 1.0 points below" in w["les_study_rule"] and "at most 5%" in w["les_study_rule"]
    assert w["les_study_choice"].startswith("the rule chooses cf-gin")
    assert "cf-gin: lesion removed → no tumour 43.0% (baseline 2.0%)" in w["les_study_summary"]
    assert "49.0%" not in w["les_study_summary"] and w["les_study_status"].startswith("1 recipes")  # seed 42: a spread
    tabs = L.study_tables(study)
    assert len(tabs) == 3 and all(f["recipe"].tolist() == ["published recipe", "cf-gin", "cf-gin"] for _, f in tabs)
    assert "validation accuracy" in tabs[0][1].columns and "de-duplicated accuracy" not in tabs[1][1].columns
    assert L.recipe_table(["cf-gin", "unknown"])["recipe"].tolist() == ["cf-gin"]
    assert L.study_glue({**study, "choice": None, "qualified": []})["les_study_choice"].endswith("(none qualified)")


def test_the_lesion_recipe_over_seeds_as_tables():
    from tumorlens.book import lesion as L

    assert L.statistics_tables({"seeds": []}) == []
    summ = {"mean": 0.5, "sd": 0.05, "n": 2, "values": [0.45, 0.55]}
    one = {"mean": 0.9, "sd": float("nan"), "n": 1, "values": [0.9]}
    cmp_rows = [
        {"test_set": t, "metric": m, "diff": -0.02, "ci_lo": -0.04, "ci_hi": 0.0}
        for t in ("official", "dedup")
        for m in ("accuracy", "macro_f1")
    ]
    diff = {"diff": 0.4, "lo": 0.35, "hi": 0.45, "n": 430}
    stats = {
        "recipe": "cf-gin",
        "today": "efficientnet_lite1",
        "seeds": [42, 43],
        "per_seed": [
            {"seed": s, "rows": cmp_rows, "external": {"all": diff}, "lesion": {"removed:telea->notumor": diff}}
            for s in (42, 43)
        ],
        "over_seeds": {
            "recipe": {"official_accuracy": one, "lesion removed:telea->notumor": summ},
            "today": {"official_accuracy": one},
        },
    }
    (cap1, means), (cap2, per_seed) = L.statistics_tables(stats)
    assert "seeds 42, 43" in cap1 and means["measure"].tolist() == [
        "official accuracy",
        "lesion test: removed (Telea) → no tumour",
    ]
    assert means.iloc[1, 1] == "50.0 ± 5.0 (n = 2)" and means.iloc[0, 1] == "90.0 (n = 1)"  # no sd for one seed
    assert means.isna().iloc[1, 2] and "—" in tables.show(means).to_html()  # today's has no such measure
    assert per_seed["seed"].tolist() == [42, 43] and per_seed["official accuracy"][0] == "-2.0 [-4.0, +0.0]"
    assert per_seed["lesion test: removed (Telea) → no tumour"][1] == "+40.0 [+35.0, +45.0]"
    assert "NaN" not in tables.show(per_seed).to_html() and "NaN" not in tables.show(means).to_html()


def test_the_input_guard_in_words_and_as_a_table():
    from tumorlens.book import pages

    none = pages.guard_glue(None)
    assert set(none) == set(pages.GUARD_KEYS) and all(v.startswith("not measured") for v in none.values())
    guard = pages.read_guard("cpu")
    if guard is None:
        pytest.skip("no guard record in this checkout")
    w = pages.guard_glue(guard)
    fa = guard["false_alarms"]["validation"]["flagged"]
    assert f"{fa:.1%} on Kaggle validation" in w["guard_false_alarms"]
    t = tables.guard_table(guard)
    assert len(t.frame) == len(guard["false_alarms"]) + len(guard["catch"])
    assert "NaN" not in t.to_html()


@pytest.mark.skipif(not (RESULTS / "lesion.json").is_file(), reason="no published lesion test in this checkout")
def test_the_published_lesion_test_reads_as_the_book_says():
    from tumorlens.book import lesion as L
    from tumorlens.book import pages

    single = json.loads((RESULTS.parents[1] / "models" / "cpu" / "models.json").read_text())["single"]
    rec = L.read_lesion(RESULTS)
    w = L.lesion_glue(rec, single)
    r = rec["models"][f"published: {single}"]["overall"]["telea"]["removed_notumor"]
    assert w["les_removed_telea"] == L.rate_text(r) and w["les_verdict"] in ("No", "Partly", "Largely yes")
    words = pages.conclusion_glue(RESULTS, "cpu")
    assert words["concl_lesion"] == w["concl_lesion"] or words["concl_lesion"].startswith(w["concl_lesion"])
    assert all(v for v in w.values())


def _mask_row(i, cls, view, predicted, d, near):
    return {"id": f"x{i:03d}", "class": cls, "view": view, "predicted": predicted, "dice_cam": str(d)}, near


def test_failure_analysis_puts_every_mask_in_one_category_and_picks_the_worst_of_each():
    from tumorlens.book.tables import failure_table
    from tumorlens.book.text import failure_words
    from tumorlens.experiments.rq import FAILURES, failure_analysis

    spec = [
        ("glioma", "ax", "glioma", 0.8, "True"),  # good
        ("glioma", "ax", "glioma", 0.3, "True"),  # found, outline off
        ("glioma", "co", "glioma", 0.0, "False"),  # missed
        ("glioma", "co", "notumor", 0.0, "False"),  # called no tumour, whatever the pointing
        ("pituitary", "sa", "meningioma", 0.1, "True"),  # wrong class, outline off
        ("pituitary", "sa", "pituitary", 0.05, "False"),  # missed
    ]
    rows = [{**r, "pointing_near": near} for r, near in (_mask_row(i, *s[:4], s[4]) for i, s in enumerate(spec))]
    f = failure_analysis(rows, "cam")
    a = f["all"]
    assert a["n"] == 6 and abs(sum(a[c] for c in FAILURES) - 1) < 1e-12
    assert (a["good"], a["outline"], a["missed"], a["no_tumour"]) == (1 / 6, 2 / 6, 2 / 6, 1 / 6)
    assert a["wrong_class"] == 1 / 6  # a no-tumour call is not a wrong tumour class
    gl_co = next(d for d in f["by_class_view"] if (d["class"], d["view"]) == ("glioma", "co"))
    assert gl_co["n"] == 2 and gl_co["missed"] == 0.5 and gl_co["no_tumour"] == 0.5
    assert [p["id"] for p in f["worst"]["glioma"]] == ["x002", "x001"]  # the worst missed, then outline off
    assert [p["category"] for p in f["worst"]["pituitary"]] == ["missed", "outline"]
    table = failure_table(f)
    assert ("all", "all") in table.index and table.loc[("glioma", "coronal"), "missed (peak off the lesion)"] == "50%"
    words = failure_words(f)
    assert "of the 6 report-half images, 17% get a good mask" in words and "glioma on coronal slices" in words
    assert failure_words(None).startswith("not measured")
    with pytest.raises(ValueError, match="received kind='both'"):
        failure_analysis(rows, "both")


def test_outline_failures_split_by_the_masks_area_where_the_rows_record_it():
    from tumorlens.book.tables import failure_table
    from tumorlens.book.text import failure_words
    from tumorlens.experiments.rq import failure_analysis

    spec = [
        ("glioma", "ax", "glioma", 0.8, "True", 0.02, 0.02),  # good
        ("glioma", "ax", "glioma", 0.3, "True", 0.10, 0.02),  # outline off, too large
        ("glioma", "co", "glioma", 0.2, "True", 0.01, 0.03),  # outline off, too small
        ("pituitary", "sa", "pituitary", 0.1, "True", 0.05, 0.01),  # outline off, too large
    ]
    rows = [
        {**_mask_row(i, *s[:4], s[4])[0], "pointing_near": s[4], "area_cam": str(s[5]), "area_truth": str(s[6])}
        for i, s in enumerate(spec)
    ]
    a = failure_analysis(rows, "cam")["all"]
    assert (a["outline"], a["outline_too_large"], a["outline_too_small"]) == (3 / 4, 2 / 4, 1 / 4)
    f = failure_analysis(rows, "cam")
    assert failure_table(f).loc[("all", "all"), "outline too large"] == "50%"
    assert "67% are too large" in failure_words(f)
    good = next(d for d in f["by_class_view"] if (d["class"], d["view"]) == ("glioma", "ax"))
    assert good["outline_too_large"] == 0.5 and good["outline_too_small"] == 0.0  # recorded areas: 0, not absent
    old = failure_analysis([{k: v for k, v in r.items() if not k.startswith("area")} for r in rows], "cam")
    assert "outline_too_large" not in old["all"] and "too large" not in failure_words(old)


def test_the_failure_gallery_is_redrawn_only_when_it_reproduces_the_published_dice(tmp_path):
    """write_failure_gallery on the published cpu segmentation: the redrawn masks reproduce each pick's Dice
    (else nothing is drawn), one row per pick; a per-image score that the models cannot reproduce draws nothing."""
    import csv
    import shutil

    import cv2

    from conftest import BRISC
    from tumorlens.config import load_config
    from tumorlens.experiments.figures import write_failure_gallery
    from tumorlens.experiments.rq import failure_analysis
    from tumorlens.records import read_rows

    res = Path(__file__).resolve().parents[1] / "results" / "cpu"
    if not BRISC.is_dir() or not (res / "segmentation" / "per_image.csv").is_file():
        pytest.skip("needs the BRISC expert masks and the published cpu results")
    cfg = load_config("cpu", overrides={"segment.masks": str(BRISC)})
    copy = tmp_path / "res"
    (copy / "segmentation").mkdir(parents=True)
    for name in ("summary.json", "per_image.csv"):
        shutil.copy(res / "segmentation" / name, copy / "segmentation" / name)
    [out] = write_failure_gallery(copy, cfg)
    rows = read_rows(res / "segmentation" / "per_image.csv")
    kind = json.loads((res / "segmentation" / "summary.json").read_text())["mask"]  # the adopted mask's kind
    picks = sum(len(v) for v in failure_analysis(rows, kind)["worst"].values())
    assert cv2.imread(str(out)).shape[0] == 22 + picks * (22 + 160)  # a header, then one titled row per pick
    worst = failure_analysis(rows, kind)["worst"]["glioma"][0]["id"]
    for r in rows:
        if r["id"] == worst:
            r[f"dice_{kind}"] = "-0.5"  # still the worst pick, and not a Dice the models can reproduce
    with open(copy / "segmentation" / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out.unlink()
    assert write_failure_gallery(copy, cfg) == [] and not out.exists()
