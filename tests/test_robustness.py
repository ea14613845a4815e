import numpy as np
import pytest

from tumorlens.book.text import find_row, verdict
from tumorlens.evaluation.robustness import (
    CORRUPTIONS,
    apply_temperature,
    calibration,
    corrupt,
    fit_temperature,
    robustness_table,
)
from tumorlens.metrics.classification import expected_calibration_error

rng = np.random.default_rng(0)
IMGS = rng.integers(40, 200, (3, 64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corruptions_keep_shape_and_grow_with_severity(kind):
    outs = [corrupt(IMGS, kind, s, seed=1) for s in (1, 2, 3)]
    for o in outs:
        assert o.shape == IMGS.shape and o.dtype == np.uint8
    diffs = [np.abs(o.astype(int) - IMGS).mean() for o in outs]
    assert diffs[0] > 0 and diffs[0] <= diffs[1] <= diffs[2] + 1e-9
    assert np.array_equal(corrupt(IMGS, kind, 2, seed=1), outs[1])  # deterministic


def test_corruption_arguments_are_checked():
    with pytest.raises(ValueError, match="kind='fog'"):
        corrupt(IMGS, "fog", 1)
    with pytest.raises(ValueError, match="severity=4"):
        corrupt(IMGS, "noise", 4)


def test_robustness_table_reports_drops_from_clean():
    y = np.array([0, 1, 2])
    calls = []

    def predict(x):  # right on clean images, wrong once they are noisy
        calls.append(x)
        clean = np.array_equal(x, IMGS)
        p = np.full((len(x), 4), 0.1)
        p[np.arange(len(x)), y if clean else (y + 1) % 4] = 0.7
        return p

    rows = robustness_table(predict, IMGS, y, kinds=("noise",), severities=(1, 3), show_progress=False)
    clean = [r for r in rows if r["kind"] == "clean"][0]
    noisy = [r for r in rows if r["kind"] == "noise"]
    assert clean["accuracy"] == 1.0 and all(r["accuracy"] == 0.0 and r["accuracy_drop"] == 1.0 for r in noisy)
    assert len(calls) == 3
    # every image flips from right to wrong: the paired interval of the drop collapses onto 1
    assert all(r["accuracy_drop_lo"] == r["accuracy_drop_hi"] == 1.0 for r in noisy)
    assert clean["accuracy_lo"] == clean["accuracy_hi"] == 1.0 and clean["macro_f1_drop"] == 0.0

    from tumorlens.book.tables import robustness_frame

    df = robustness_frame(rows, "official")
    assert df.loc["noise", "severity 3"] == "0.000 [0.000, 0.000]" and df.loc["noise", "clean"].startswith("1.000")


def test_temperature_scaling_fixes_overconfidence():
    n = 2000
    y = rng.integers(0, 4, n)
    correct = rng.random(n) < 0.7  # 70% accurate ...
    pred = np.where(correct, y, (y + 1 + rng.integers(0, 3, n)) % 4)
    probs = np.full((n, 4), 0.01)
    probs[np.arange(n), pred] = 0.97  # ... but 97% confident
    t = fit_temperature(probs[:1000], y[:1000])
    assert t > 1.5
    scaled = apply_temperature(probs[1000:], t)
    assert np.allclose(scaled.sum(1), 1) and (scaled.argmax(1) == probs[1000:].argmax(1)).all()
    assert expected_calibration_error(y[1000:], scaled) < expected_calibration_error(y[1000:], probs[1000:]) / 2
    cal = calibration(probs[:1000], y[:1000], probs[1000:], y[1000:])
    assert cal["ece_after"] < cal["ece_before"] and cal["nll_after"] < cal["nll_before"] and cal["accuracy_unchanged"]


def test_verdicts_follow_the_interval():
    assert verdict({"ci_lo": 0.01, "ci_hi": 0.05}).startswith("better")
    assert verdict({"ci_lo": -0.05, "ci_hi": -0.01}).startswith("worse")
    assert verdict({"ci_lo": -0.01, "ci_hi": 0.02}).startswith("not distinguishable")
    rows = [{"a": "x", "test_set": "dedup"}, {"a": "x", "test_set": "official"}]
    assert find_row(rows, a="x", test_set="official") is rows[1] and find_row(rows, a="y") is None
