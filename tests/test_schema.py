"""Results files carry a schema version; readers refuse other versions and partial files, naming them."""

import json
from pathlib import Path

import pytest

from tumorlens.utils.files import read_json, write_json
from tumorlens.utils.schema import SCHEMAS, SchemaError, check, stamp

REPO = Path(__file__).resolve().parents[1]


def test_stamp_puts_the_schema_first_and_check_accepts_it():
    obj = stamp({"kind": "official", "counts": {}}, "splits")
    assert list(obj)[0] == "schema" and obj["schema"] == {"name": "splits", "version": SCHEMAS["splits"].version}
    assert check(obj, "splits") is obj


def test_a_writer_that_leaves_out_a_required_key_is_refused():
    with pytest.raises(ValueError, match=r"'splits' results file needs \['counts'\]"):
        stamp({"kind": "official"}, "splits")
    with pytest.raises(ValueError, match="unknown results schema 'nope'"):
        stamp({}, "nope")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (None, "no schema"),
        ({"name": "splits", "version": 999}, "schema 'splits' version 999"),
        ({"name": "scan", "version": 1}, "schema 'scan' version 1"),
    ],
)
def test_a_file_of_another_schema_fails_naming_the_file(tmp_path, schema, message):
    f = tmp_path / "splits.json"
    f.write_text(json.dumps({"kind": "official", "counts": {}} | ({"schema": schema} if schema else {})))
    with pytest.raises(SchemaError, match=rf"splits.json: expected a 'splits' results file .*{message}.*collect"):
        read_json(f, schema="splits")


def test_a_truncated_json_file_fails_naming_the_file(tmp_path):
    f = write_json(tmp_path / "rq.json", {"a": 1})
    f.write_text(f.read_text()[:5])
    with pytest.raises(ValueError, match=r"rq.json: not valid JSON"):
        read_json(f, schema="rq")


def test_every_published_json_file_is_current():
    """The committed results read without error by this version of the code (and the manifest is fresh)."""
    from tumorlens.experiments.collect import check_results

    res = REPO / "results" / "cpu"
    if not res.is_dir():
        pytest.skip("no published cpu results in this checkout")
    assert check_results(res) == []


def test_check_results_names_a_changed_a_stray_and_a_stale_file(tmp_path):
    from tumorlens.experiments.collect import check_results, write_manifest

    res = tmp_path / "res"
    write_json(res / "data" / "splits.json", {"kind": "official", "counts": {}}, schema="splits")
    write_json(res / "reproduction.json", {"jobs": [], "total_seconds": 0, "total_minutes": 0}, schema="reproduction")
    (res / "data" / "dedup_test.csv").write_text("path\n")
    assert check_results(res)[0].endswith(
        "manifest.json: missing; run `tumorlens collect` to publish results with their manifest"
    )
    write_manifest(res, "smoke")
    assert check_results(res) == []
    (res / "data" / "dedup_test.csv").write_text("path\na.png\n")  # edited after collect
    (res / "stray.csv").write_text("x\n")  # never collected
    write_json(res / "reproduction.json", {"jobs": [], "total_seconds": 0, "total_minutes": 1}, schema="reproduction")
    problems = check_results(res)
    assert any("dedup_test.csv: changed since it was collected" in p for p in problems)
    assert any("reproduction.json: changed since it was collected" in p for p in problems)
    assert any("stray.csv: not written by collect" in p for p in problems)
    write_manifest(res, "smoke")  # recollected: current again, except a file of an older schema
    d = read_json(res / "data" / "splits.json")
    d["schema"]["version"] = 0
    (res / "data" / "splits.json").write_text(json.dumps(d))
    write_manifest(res, "smoke")
    assert [p for p in check_results(res) if "splits.json" in p] == [
        f"{(res / 'data' / 'splits.json').as_posix()}: expected a 'splits' results file of schema version 1, "
        f"found schema 'splits' version 0; {SCHEMAS['splits'].remedy}"
    ]
