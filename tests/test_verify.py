"""`tumorlens verify`: a rerun of a published recipe compared with the published record."""

import shutil
from pathlib import Path

import pytest

from tumorlens.experiments.verify import format_verify, seed_spread, verify
from tumorlens.utils.files import read_json

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
    res = tmp_path / "results"
    shutil.copytree(REPO / "results" / "smoke", res)
    monkeypatch.setenv("TUMORLENS_RUNS", str(tmp_path / "runs"))
    summary = read_json(res / "summary.json", schema="summary")
    recipe = next(n for n in summary["models"] if n.startswith("efficientnet_lite0+sbr/"))
    r = verify("smoke", recipe, res=res, show_progress=False)
    assert r["recipe"] == recipe and (tmp_path / "runs" / "smoke" / "verify").is_dir()
    assert 0 <= r["same_class"] <= 1 and r["n_test"] == 60
    m = r["metrics"]["official"]["accuracy"]
    assert m["difference"] == pytest.approx(m["rerun"] - m["published"])
    inside = all(v["inside"] for split in r["metrics"].values() for v in split.values())
    assert r["inside_seed_spread"] == inside and r["rerun_determinism"]["op_determinism"] is True
    assert read_json(res / "verify.json", schema="verify")["recipe"] == recipe
    assert ("reproduced" if inside else "NOT reproduced") in format_verify(r).splitlines()[-1]
