"""Shared fixtures. Every test writes only under pytest's tmp_path; caches go to a per-session folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow info/warning logs: not for test output
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")  # as train.deterministic sets it (before TensorFlow starts)
REAL_DATA = Path(os.environ.get("TUMORLENS_DATA") or REPO.parent / "shared" / "data" / "brain-tumor-mri")
BRISC = REPO.parent / "shared" / "data" / "brisc2025-seg-dev"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep test caches out of the user's ~/.cache (and start each session cold)."""
    old = os.environ.get("TUMORLENS_CACHE")
    os.environ["TUMORLENS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("TUMORLENS_PROGRESS", "0")
    yield
    if old is None:
        os.environ.pop("TUMORLENS_CACHE", None)
    else:
        os.environ["TUMORLENS_CACHE"] = old


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL_DATA / "Training").is_dir():
        pytest.skip(f"real dataset not found at {REAL_DATA} (set TUMORLENS_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    from tumorlens.data.phantoms import write_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    write_phantoms(root, size=64, train_per_class=12, test_per_class=4, duplicates=4, seed=7)
    return root


#: Test files by their measured cost in `make test` (heaviest first, from `--durations`): the Makefile runs
#: them with ``--dist loadfile --no-loadscope-reorder``, so pytest-xdist hands the files out in this order
#: and the two workers finish together (longest first). A file not listed runs after these; a stale list
#: only costs time, never a result.
HEAVY_FIRST = (
    "test_smoke_book.py",  # ~230 s: one worker builds the book while the other runs the rest
    "test_models.py",
    "test_predict.py",
    "test_masks.py",
    "test_train.py",
    "test_report.py",
    "test_published.py",
    "test_external.py",
    "test_grid.py",
    "test_strategy.py",
    "test_verify.py",
    "test_refine.py",
    "test_hardening.py",
    "test_explain_segment.py",
    "test_lesion.py",
    "test_ensemble_stats.py",
    "test_phantoms_audit.py",
    "test_fuzz.py",
)


#: The test tiers: ``make test`` (the README's command, CI) runs the fast tier, which checks every contract;
#: tests marked ``full`` (the same contracts again on whole data sets or in longer runs, e.g. the published
#: model on all 1,311 Testing images, the cpu book built from a clone, the whole Colab walkthrough) run with
#: ``TUMORLENS_TESTS=full`` (``make test-full``: the Pages workflow, ``make reproduce``). A full-tier test
#: names its fast counterpart in its docstring.
FULL_TIER = os.environ.get("TUMORLENS_TESTS", "") == "full"


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
    if not FULL_TIER:
        skip = pytest.mark.skip(reason="full tier: TUMORLENS_TESTS=full (make test-full)")
        for item in items:
            if "full" in item.keywords:
                item.add_marker(skip)
