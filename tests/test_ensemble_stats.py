import numpy as np
import pytest

from tumorlens.config import CLASSES
from tumorlens.evaluation.ensembles import fit_hybrid, load_pipeline, save_pipeline, select_members, soft_vote
from tumorlens.metrics.stats import (
    METRICS,
    _resampled,
    bootstrap_ci,
    compare,
    macro_f1,
    mcnemar,
    mcnemar_from_counts,
    paired_bootstrap_diff,
    seed_summary,
)
from tumorlens.records import read_predictions


def test_soft_vote_on_hand_computed_probabilities():
    a = np.array([[0.6, 0.4, 0.0, 0.0], [0.1, 0.1, 0.1, 0.7]])
    b = np.array([[0.2, 0.8, 0.0, 0.0], [0.3, 0.3, 0.3, 0.1]])
    assert np.allclose(soft_vote([a, b]), [[0.4, 0.6, 0, 0], [0.2, 0.2, 0.2, 0.4]])
    assert np.allclose(soft_vote([a, b], [3, 1]), [[0.5, 0.5, 0, 0], [0.15, 0.15, 0.15, 0.55]])
    assert np.allclose(soft_vote([a]), a)
    with pytest.raises(ValueError, match=r"\[1, -1\]"):
        soft_vote([a, b], [1, -1])
    with pytest.raises(ValueError, match="one shape"):
        soft_vote([a, a[:1]])


def _write_run(d, val_correct, test_correct):
    d.mkdir(parents=True)
    y = np.arange(8) % 4
    for name, correct in (("val_predictions.csv", val_correct), ("predictions.csv", test_correct)):
        lines = ["path,true_class," + ",".join(f"p_{c}" for c in CLASSES) + ",pred_class"]
        for i, t in enumerate(y):
            p = np.full(4, 0.1)
            p[t if i < correct else (t + 1) % 4] = 0.7
            lines.append(f"img{i}.jpg,{CLASSES[t]}," + ",".join(f"{v:.2f}" for v in p) + f",{CLASSES[int(p.argmax())]}")
        (d / name).write_text("\n".join(lines) + "\n")
    return d


def test_members_are_chosen_on_validation_never_on_test(tmp_path):
    good_val = _write_run(tmp_path / "a" / "seed-1", val_correct=8, test_correct=2)
    bad_val = _write_run(tmp_path / "b" / "seed-1", val_correct=3, test_correct=8)
    chosen = select_members([bad_val, good_val], k=1)
    assert chosen[0]["run_dir"] == str(good_val)
    rp = read_predictions(good_val)
    assert rp.probs.shape == (8, 4) and rp.y.tolist() == [0, 1, 2, 3] * 2
    assert rp.align(["img3.jpg", "img0.jpg"]).y.tolist() == [3, 0]


@pytest.mark.parametrize("kind", ["lr", "svm"])
def test_hybrid_pipelines_on_tiny_features(kind, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 8))
    y = np.repeat(np.arange(4), 30)
    x = centres[y] + rng.normal(0, 1, (120, 8))
    xt = centres[y] + rng.normal(0, 1, (120, 8))
    pipe = fit_hybrid(x, y, kind, cv=3)
    proba = pipe.predict_proba(xt)
    assert proba.shape == (120, 4) and np.allclose(proba.sum(1), 1)
    assert (proba.argmax(1) == y).mean() > 0.9 and pipe.best_params_
    path = save_pipeline(pipe, tmp_path / "p.npz")  # arrays and JSON: loading runs no code
    again = load_pipeline(path)
    np.testing.assert_allclose(again.predict_proba(xt), proba, rtol=0, atol=1e-12)
    assert (again.predict(xt) == pipe.predict(xt)).all()
    with pytest.raises(ValueError, match="kind='knn'"):
        fit_hybrid(x, y, "knn")


def test_svm_hybrid_when_features_outnumber_samples():
    # the smoke profile: ~200 training samples, 1,280-d features; PCA must fit inside each CV fold
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 54)
    x = rng.normal(0, 3, (4, 600))[y] + rng.normal(0, 1, (216, 600))
    pipe = fit_hybrid(x, y, "svm", cv=3)
    assert pipe.named_steps["pca"].n_components < 216 * 2 // 3
    assert (pipe.predict(x) == y).mean() > 0.9


def test_mcnemar_against_reference_values():
    # Wikipedia's McNemar example (b=121, c=59): chi-square 21.35 without correction, p < 0.001
    ref = mcnemar_from_counts(121, 59, exact=False, correction=False)
    assert ref["statistic"] == pytest.approx(21.356, abs=1e-3) and ref["p_value"] < 0.001
    corrected = mcnemar_from_counts(121, 59)
    assert corrected["statistic"] == pytest.approx(61**2 / 180) and corrected["p_value"] == pytest.approx(
        5.45e-6, rel=0.02
    )
    # exact binomial: b=1, c=9 -> p = 2 * (1 + 10) / 2^10
    assert mcnemar_from_counts(1, 9)["p_value"] == pytest.approx(22 / 1024)
    assert mcnemar_from_counts(0, 0)["p_value"] == 1.0
    y = np.array([0, 1, 2, 3, 0, 1])
    r = mcnemar(y, y, np.array([1, 1, 2, 3, 1, 1]))
    assert (r["b"], r["c"]) == (2, 0)


def test_bootstrap_intervals():
    y = np.zeros(400, int)
    pred = np.r_[np.zeros(200, int), np.ones(200, int)]
    ci = bootstrap_ci(y, pred, "accuracy", n_boot=2000, seed=1)
    assert (
        ci["value"] == 0.5 and ci["lo"] == pytest.approx(0.451, abs=0.01) and ci["hi"] == pytest.approx(0.549, abs=0.01)
    )
    perfect = bootstrap_ci(y, y, "macro_f1", n_boot=200)
    assert perfect["lo"] == perfect["hi"] == perfect["value"]
    d = paired_bootstrap_diff(y, y, pred, "accuracy", n_boot=1000)
    assert d["diff"] == 0.5 and d["lo"] > 0.4 and d["hi"] < 0.6
    with pytest.raises(ValueError, match="metric='auc'"):
        bootstrap_ci(y, pred, "auc")


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_the_bootstrap_computed_at_once_equals_the_plain_loop_exactly(metric):
    """Every resample's value, counted by confusion matrices at once, is the plain loop's to the last bit:
    random predictions, a class absent from both, one image, and labels that are not class indices."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 300)
    cases = [
        (y, np.where(rng.random(300) < 0.8, y, rng.integers(0, 4, 300))),
        (y % 3, (y + 1) % 3),  # class 3 in neither
        (y[:1], y[:1]),
        (y.astype(float), y.astype(float)),  # not integer labels: the loop itself
    ]
    for yy, pp in cases:
        idx = rng.integers(0, len(yy), (300, len(yy)))
        loop = np.array([METRICS[metric](yy[i], pp[i]) for i in idx])
        assert np.array_equal(_resampled(metric, yy, pp, idx, chunk=64), loop)


def test_macro_f1_matches_sklearn_and_seed_summary():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", labels=[0, 1, 2, 3], zero_division=0))
    s = seed_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["sd"] == 1.0 and s["n"] == 3
    row = compare("A", "B", y, y, p, n_boot=200)
    assert row["diff"] == pytest.approx(1 - (y == p).mean()) and row["ci_lo"] > 0 and row["p_mcnemar"] < 1e-6
