"""`tumorlens verify`: a rerun of a published recipe compared with the published record."""

import json
import shutil
from pathlib import Path

import pytest

from tumorlens.config import load_config
from tumorlens.experiments.verify import format_verify, seed_spread, verify
from tumorlens.records import published_run
from tumorlens.training.run import train_run
from tumorlens.utils.files import read_json, write_json

REPO = Path(__file__).resolve().parents[1]


def _m(acc, f1):
    return {"official_accuracy": acc, "official_macro_f1": f1, "dedup_accuracy": acc - 0.1, "dedup_macro_f1": f1 - 0.1}


def test_seed_spread_own_seeds_or_the_widest_other_recipe():
    models = {
        "a/seed-1": _m(0.90, 0.80),
        "a/seed-2": _m(0.95, 0.82),
        "b/seed-1": _m(0.91, 0.85),
        "b/seed-2": _m(0.92, 0.86),
        "c/seed-1": _m(0.99, 0.99),
    }
    own = seed_spread(models, "b")
    assert own["seeds"] == 2 and own["official"]["accuracy"] == pytest.approx(0.01)
    single = seed_spread(models, "c")
    assert "one seed" in single["source"] and "a over 2 seeds" in single["source"]
    assert single["official"]["accuracy"] == pytest.approx(0.05) and single["dedup"]["macro_f1"] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="two or more seeds"):
        seed_spread({"c/seed-1": _m(0.9, 0.9)}, "c")
    with pytest.raises(ValueError, match="variant>/seed-<n>"):
        seed_spread({"c": _m(0.9, 0.9)}, "c")


def test_verify_retrains_a_published_smoke_recipe_and_compares(tmp_path, monkeypatch):
    """A smoke recipe is trained and published (a results folder as collect lays it out); verify
    retrains it with the same code and settings: the same predictions, inside the spread, exit 0."""
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    cfg = load_config("smoke", overrides={"model.modules": ["sbr"]})
    run = Path(train_run(cfg, run_dir=tmp_path / "published-run", show_progress=False)["run_dir"])
    res = tmp_path / "results"
    pub = published_run(res, "efficientnet_lite0+sbr", 42)
    pub.mkdir(parents=True)
    for name in ("metrics.json", "predictions.csv"):
        shutil.copy2(run / name, pub / name)
    m = json.loads((run / "metrics.json").read_text())
    row = {f"{s}_{k}": m[s][k] for s in ("official", "dedup") for k in ("accuracy", "macro_f1")}
    models = {"efficientnet_lite0+sbr/seed-42": row, "efficientnet_lite0/seed-42": _m(0.5, 0.4)}
    models["efficientnet_lite0/seed-43"] = _m(0.6, 0.5)
    summary = {"profile": "smoke", "data": "phantoms", "image_size": 64, "models": models, "environment": {}}
    write_json(res / "summary.json", summary, schema="summary")
    r = verify("smoke", "efficientnet_lite0+sbr/seed-42", res=res, show_progress=False)
    assert (tmp_path / "runs" / "smoke" / "verify" / "efficientnet_lite0+sbr" / "seed-42").is_dir()
    assert r["identical_predictions"] and r["same_class"] == 1.0 and r["n_test"] == 60
    assert r["inside_seed_spread"] and r["rerun_determinism"]["op_determinism"] is True
    assert "widest spread" in r["seed_spread"]["source"]
    assert read_json(res / "verify.json", schema="verify")["recipe"] == "efficientnet_lite0+sbr/seed-42"
    assert format_verify(r).splitlines()[-1].startswith("reproduced")


def test_verify_retrains_a_recipe_with_the_settings_the_plan_gives_it():
    """Another backbone is planned at its native input size: verify must retrain it there, not at the
    profile's default size (a Lite1 rerun at 224 px once agreed on only 98% of the test images)."""
    from tumorlens.experiments.verify import recipe_overrides

    assert recipe_overrides("cpu", "efficientnet_lite1", 43) == {"data.image_size": 240}
    assert recipe_overrides("cpu", "efficientnet_lite2", 42) == {"data.image_size": 260}
    assert recipe_overrides("cpu", "efficientnet_lite0+sbr", 42) == {}
    assert recipe_overrides("cpu", "efficientnet_lite0+sbr", 99) == {}  # not planned: the profile's own settings
