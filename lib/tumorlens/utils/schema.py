"""Schema versions of the results files: every JSON file a run or `collect` publishes says which
kind of file it is and which version of that kind's layout, and every reader checks both.

    write_json(out / "scan.json", report.to_dict(), schema="scan")      # adds "schema": {"name", "version"}
    d = read_json(out / "scan.json", schema="scan")                      # SchemaError naming the file if stale

A reader never falls back to a default for a key an older (or newer) writer did not produce: a file
from another version raises `SchemaError` naming the file, what it found, and how to rewrite it.
When a kind's layout changes, bump its version here (the writers and readers follow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_KEY", "SCHEMAS", "Schema", "SchemaError", "stamp", "check"]

SCHEMA_KEY = "schema"


class SchemaError(ValueError):
    """A results file that this version of tumorlens cannot read fully (another schema, missing keys)."""


@dataclass(frozen=True)
class Schema:
    version: int
    required: tuple[str, ...]
    remedy: str  # how to rewrite a stale file of this kind


_DATA = "rerun the data step (tumorlens run --profile P --only 01_data) and `tumorlens collect --profile P`"
_TRAIN = "retrain the run (tumorlens run --profile P --force --only 02_train) and collect"
_EXPLAIN = "rerun the explain step (tumorlens run --profile P --only 03_explain --force) and collect"
_COLLECT = "rerun `tumorlens collect --profile P`"

#: Every versioned kind of results file: its current version and the top-level keys readers rely on.
SCHEMAS: dict[str, Schema] = {
    "scan": Schema(1, ("dataset", "layout", "n_images", "counts", "channels", "n_bad", "bad"), _DATA),
    "audit": Schema(1, ("dataset", "n_images", "n_pairs", "pairs", "testing_vs_training", "examples"), _DATA),
    "splits": Schema(1, ("kind", "counts"), _DATA),
    "metrics": Schema(1, ("official", "dedup"), _TRAIN),
    "run": Schema(1, ("config", "dataset", "environment", "summary"), _TRAIN),
    "ensembles": Schema(1, ("members", "systems", "comparisons"), "rerun 04_ensembles and collect"),
    "robustness": Schema(1, ("run", "corruptions", "rows"), "rerun 05_robustness and collect"),
    "segmentation": Schema(1, ("model", "n_report", "map", "mask", "params", "per_class", "methods"), _EXPLAIN),
    "segment": Schema(1, ("map", "mask", "params", "model"), _EXPLAIN),
    "tuning": Schema(1, ("tune_ids", "grid"), _EXPLAIN),
    "localisation": Schema(1, ("source", "runs", "rows"), _EXPLAIN),
    "network": Schema(1, ("params", "epochs", "history"), _EXPLAIN),
    "rq": Schema(1, ("backbone", "seeds", "runs", "rq1"), _COLLECT),  # rq2-rq5 only where their runs exist
    "summary": Schema(1, ("profile", "data", "image_size", "models", "environment"), _COLLECT),
    "reproduction": Schema(1, ("jobs", "total_seconds", "total_minutes"), _COLLECT),
    "block_costs": Schema(1, ("image_size", "blocks"), _COLLECT),
    "end_to_end": Schema(
        1, ("profile", "minutes", "workers", "jobs"), "rerun the whole profile in one go: make reproduce PROFILE=P"
    ),
    "full_run": Schema(
        1, ("profile", "parts", "minutes", "started", "commit", "jobs"), "rerun the paper in one go: make reproduce"
    ),
    "bench": Schema(1, ("profile", "systems", "environment"), "rerun `tumorlens bench --profile P`"),
    "manifest": Schema(1, ("profile", "files"), _COLLECT),
    "external": Schema(1, ("profile", "models", "sets"), "rerun `tumorlens external --profile P`"),
    "brisc_overlap": Schema(
        1,
        ("profile", "reference", "params", "sets"),
        "rerun tumorlens.experiments.external.overlap_audit(P) (the external folders against Kaggle Training)",
    ),
    "grid": Schema(
        1, ("workers", "wall_seconds", "identical_results", "cpu_projection"), "rerun benchmarks/grid.py --results"
    ),
    "verify": Schema(
        1,
        ("profile", "recipe", "metrics", "same_class", "seed_spread", "inside_seed_spread"),
        "rerun `tumorlens verify --profile P`",
    ),
    "jobs": Schema(1, ("profile", "jobs"), _COLLECT),
    "lesion": Schema(
        1, ("profile", "set", "dilation", "methods", "models"), "rerun `tumorlens evaluate lesion --profile P`"
    ),
    "published_models": Schema(
        1, ("profile", "single", "ensemble", "models", "segmentation"), "rerun `tumorlens publish --profile P --force`"
    ),
}


def _schema(name: str) -> Schema:
    if name not in SCHEMAS:
        raise ValueError(f"unknown results schema {name!r}; known: {', '.join(sorted(SCHEMAS))}")
    return SCHEMAS[name]


def stamp(obj: dict, name: str) -> dict:
    """``obj`` with its schema first (``{"schema": {"name": name, "version": V}, ...}``). Raises
    ValueError naming a required key the writer left out (a writer must produce the whole layout)."""
    s = _schema(name)
    if not isinstance(obj, dict):
        raise ValueError(f"a {name!r} results file holds a JSON object; received {type(obj).__name__}")
    missing = [k for k in s.required if k not in obj]
    if missing:
        raise ValueError(f"a {name!r} results file needs {missing}; the writer left them out")
    body = {k: v for k, v in obj.items() if k != SCHEMA_KEY}
    return {SCHEMA_KEY: {"name": name, "version": s.version}, **body}


def check(obj: Any, name: str, path: str | os.PathLike = "<object>") -> dict:
    """``obj`` (read from ``path``) if it is a current ``name`` file; else `SchemaError` naming the
    file, the schema found, the keys missing and how to rewrite it."""
    s = _schema(name)
    where = Path(path).as_posix()
    found = obj.get(SCHEMA_KEY) if isinstance(obj, dict) else None
    if not isinstance(found, dict) or found.get("name") != name or found.get("version") != s.version:
        seen = (
            "no schema (written before results files were versioned)"
            if not isinstance(found, dict)
            else f"schema {found.get('name')!r} version {found.get('version')!r}"
        )
        raise SchemaError(
            f"{where}: expected a {name!r} results file of schema version {s.version}, found {seen}; {s.remedy}"
        )
    missing = [k for k in s.required if k not in obj]
    if missing:
        raise SchemaError(f"{where}: a partial {name!r} results file (missing {missing}); {s.remedy}")
    return obj
