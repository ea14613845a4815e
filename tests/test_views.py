"""The view-shortcut lever: plane estimates from image features and plane-balanced training weights."""

import numpy as np
import pytest

from tumorlens.config import CLASSES, load_config
from tumorlens.data.views import fit_view_estimator, view_balance_weights, view_counts


def test_plane_balanced_weights_even_out_the_planes_within_each_class():
    y = np.array([0] * 10 + [1] * 4)
    views = np.array(["axial"] * 8 + ["coronal"] * 2 + ["axial", "sagittal", "sagittal", "sagittal"])
    np.testing.assert_array_equal(view_balance_weights(y, views, 0.0), np.ones(14))
    full = view_balance_weights(y, views, 1.0)
    for c in (0, 1):  # class weights keep the class balance: each class's weights average 1
        assert full[y == c].mean() == pytest.approx(1.0)
        totals = [full[(y == c) & (views == v)].sum() for v in np.unique(views[y == c])]
        assert totals == pytest.approx([totals[0]] * len(totals))  # every plane the same total weight
    assert full[8] == pytest.approx(4 * full[0])  # 2 coronal vs 8 axial slices
    half = view_balance_weights(y, views, 0.5)
    assert 1 < half[8] / half[0] < full[8] / full[0]  # tempered: between the observed mix and full balance
    one_plane = view_balance_weights(np.zeros(5, int), ["axial"] * 5, 1.0)
    np.testing.assert_allclose(one_plane, 1.0)  # nothing to balance
    with pytest.raises(ValueError, match="balance must be in \\[0, 1\\]; got 1.5"):
        view_balance_weights(y, views, 1.5)
    with pytest.raises(ValueError, match="3 views for 14 labels"):
        view_balance_weights(y, views[:3], 1.0)


def test_view_counts_keep_every_class_and_plane():
    counts = view_counts(np.array([0, 0, 2]), ["axial", "sagittal", "axial"], CLASSES)
    assert counts["glioma"] == {"axial": 1, "coronal": 0, "sagittal": 1}
    assert counts["meningioma"] == {"axial": 0, "coronal": 0, "sagittal": 0}
    assert counts["notumor"]["axial"] == 1


def test_the_plane_estimator_learns_separable_features_and_checks_its_labels():
    rng = np.random.default_rng(0)
    centres = {"axial": [5, 0, 0], "coronal": [0, 5, 0], "sagittal": [0, 0, 5]}
    views = [v for v in centres for _ in range(12)]
    feats = (
        np.array([centres[v] for v in views], float) + rng.normal(0, 0.5, (36, 3)) + 10
    )  # positive, like ReLU features
    clf, check = fit_view_estimator(feats, views)
    assert check == {"n": 36, "folds": 5, "cv_accuracy": 1.0}
    assert list(clf.predict(np.array([[15, 10, 10], [10, 10, 15]], float))) == ["axial", "sagittal"]
    with pytest.raises(ValueError, match="among axial, coronal, sagittal; got oblique"):
        fit_view_estimator(feats[:2], ["axial", "oblique"])
    with pytest.raises(ValueError, match="one plane only"):
        fit_view_estimator(feats[:3], ["axial"] * 3)


def test_a_dataset_with_sample_weights_yields_them_beside_the_labels():
    from tumorlens.data.pipeline import make_dataset

    x = np.zeros((5, 8, 8, 3), np.uint8)
    ds = make_dataset(x, np.arange(5), batch_size=5, sample_weight=np.arange(5) / 2)
    xb, yb, wb = next(iter(ds))
    np.testing.assert_allclose(wb.numpy(), np.arange(5) / 2)
    with pytest.raises(ValueError, match="one weight per image \\(5\\); got 2"):
        make_dataset(x, np.arange(5), sample_weight=[1, 2])


def test_sample_weights_of_one_train_exactly_as_none_and_others_change_training():
    import keras

    from tumorlens.models.classifier import build_classifier
    from tumorlens.training.fit import train_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])  # unbalanced: class weights are on
    cfg = load_config(
        "smoke",
        overrides={"data.batch_size": 8, "train.warmup_epochs": 2, "train.finetune_epochs": 0, "train.cached_views": 1},
    )

    def losses(weights):
        keras.utils.set_random_seed(5)
        model = build_classifier("mobilenetv2", (), image_size=32, dropout=0.0)
        res = train_model(model, "mobilenetv2", x, y, x[:4], y[:4], cfg, sample_weight=weights, show_progress=False)
        return [r["loss"] for r in res.history]

    base = losses(None)
    assert losses(np.ones(16)) == pytest.approx(base, rel=1e-5)
    assert losses(np.r_[np.full(8, 3.0), np.full(8, 0.2)]) != pytest.approx(base, rel=1e-3)
    with pytest.raises(ValueError, match="sample_weight must be \\(16,\\)"):
        losses(np.ones(3))


def test_the_view_ablation_is_planned_over_every_seed_in_the_cpu_profile_only():
    from tumorlens.experiments.jobs import VIEW_ABLATION, plan

    jobs = [j for j in plan("cpu") if "@views" in str(j.run_dir)]
    assert [j.params["seed"] for j in jobs] == list(load_config("cpu").reproduce.seeds)
    assert all(j.params["overrides"] == VIEW_ABLATION and j.part == "supplementary" for j in jobs)
    assert not load_config("smoke").reproduce.view_balance
    assert load_config("cpu").train.view_balance == 0.0  # an ablation, not the default


def test_the_view_ablation_in_words():
    from tumorlens.book.pages import view_balance_words

    row = {
        "variant": "efficientnet_lite0@views",
        "test_set": "official",
        "metric": "accuracy",
        "mean": 0.97,
        "sd": 0.01,
        "n": 3,
    }
    est = {
        "labelled": {"n": 96, "folds": 5, "cv_accuracy": 0.979},
        "balance": 0.5,
        "train_counts": {"notumor": {"axial": 100, "coronal": 5, "sagittal": 15}},
        "weights": {"notumor": {"axial": 0.8, "coronal": 4.5, "sagittal": 2.6}},
    }
    rq = {"views": {"variants": ["efficientnet_lite0@views"], "seeds_table": [row], "estimate": est}, "runs": {}}
    words = view_balance_words(rq)
    assert words.startswith(
        "the plane estimate (98% correct in 5-fold cross-validation on 96 hand labels) finds 20 of 120 no-tumour "
        "training slices not axial (5 coronal, 15 sagittal); with balance 0.5 a no-tumour slice weighs 0.80 (axial), "
        "4.50 (coronal), 2.60 (sagittal) within its class: efficientnet_lite0@views (3 seeds): official 0.9700 ± 0.0100"
    )
    assert (
        view_balance_words({})
        == "not run for these results (set reproduce.view_balance and run the supplementary part)"
    )


def test_planes_estimated_on_real_training_images(real_data):
    from tumorlens.data.io import letterbox, read_any
    from tumorlens.training.views import estimate_views

    files = sorted((real_data / "Training" / "meningioma").iterdir())[:24]
    x = np.stack([letterbox(read_any(f), 224) for f in files])
    views, record = estimate_views(x, real_data)
    assert views.shape == (24,) and set(views) <= {"axial", "coronal", "sagittal"}
    assert record["labelled"]["n"] == 96 and record["labelled"]["cv_accuracy"] >= 0.9
    assert len(set(views)) >= 2  # meningioma slices come in more than one plane
    with pytest.raises(FileNotFoundError, match="point data.root at the Kaggle dataset"):
        estimate_views(x[:2], real_data / "missing")


def test_the_plane_estimate_table_shows_counts_shares_and_weights():
    from tumorlens.book.tables import plane_estimate_table

    est = {
        "train_counts": {
            "notumor": {"axial": 90, "coronal": 2, "sagittal": 8},
            "glioma": {"axial": 0, "coronal": 0, "sagittal": 0},
        },
        "weights": {"notumor": {"axial": 0.9, "coronal": 3.1, "sagittal": 1.6}},
    }
    df = plane_estimate_table(est)
    assert list(df.index) == ["glioma", "no tumour"]
    assert df.loc["no tumour", "coronal"] == "2 (2%)" and df.loc["no tumour", "weight coronal"] == "3.10"
    assert df.loc["glioma", "images"] == "0" and df.loc["glioma", "weight axial"] == "—"
