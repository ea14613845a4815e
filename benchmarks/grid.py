"""Benchmark (not a test): the smoke profile's whole grid, one job after another vs on Dask workers.

    python benchmarks/grid.py [--workers 2] [--out DIR]

Runs every job of ``tumorlens run --profile smoke`` twice from scratch, each time into its own runs folder
and cache (nothing is collected into ``results/``): sequentially, then with ``--workers N`` local Dask
workers. Records both wall times and whether the two runs wrote the same results files (times and
paths aside, `tumorlens.experiments.grid.comparable_results`), and the cpu profile's projected wall
time on 1-8 workers from its published per-job times. Writes ``grid_cpu.json`` (and, with ``--results
results/cpu``, ``results/cpu/grid.json``, which the book's reproduction section reads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--results", default=None, help="also write grid.json into this results folder (the book reads it)")
    args = ap.parse_args()
    os.environ.setdefault("TUMORLENS_PROGRESS", "0")
    from tumorlens import paths
    from tumorlens.experiments.grid import comparable_results, projected_minutes
    from tumorlens.experiments.runner import run_profile
    from tumorlens.utils.environment import cpu_model, environment
    from tumorlens.utils.files import read_json, write_json

    tmp = Path(tempfile.mkdtemp(prefix="tumorlens-grid-"))
    walls, outputs = {}, {}
    for mode, workers in (("sequential", None), ("grid", args.workers)):
        os.environ["TUMORLENS_RUNS"] = str(tmp / mode)
        os.environ["TUMORLENS_CACHE"] = str(tmp / f"cache-{mode}")
        t0 = time.perf_counter()
        done = run_profile("smoke", workers=workers, collect_results=False, show_progress=False)
        walls[mode] = round(time.perf_counter() - t0, 1)
        outputs[mode] = comparable_results(tmp / mode / "smoke")
        print(f"{mode}: {len(done)} jobs in {walls[mode]} s", flush=True)
    differing = sorted(k for k in outputs["sequential"] if outputs["grid"].get(k) != outputs["sequential"][k])
    missing = sorted(set(outputs["sequential"]) ^ set(outputs["grid"]))
    cpu_timing = paths.repo_root() / "results" / "cpu" / "reproduction.json"
    result = {
        "benchmark": "grid",
        "profile": "smoke",
        "workers": args.workers,
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "wall_seconds": walls,
        "speedup": round(walls["sequential"] / walls["grid"], 2),
        "results_files": len(outputs["sequential"]),
        "identical_results": not differing and not missing,
        "differing_files": differing + missing,
        "cpu_projection": (
            projected_minutes("cpu", read_json(cpu_timing, schema="reproduction")) if cpu_timing.is_file() else None
        ),
        "environment": environment(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "grid_cpu.json", result, schema="grid")
    if args.results:
        from tumorlens.experiments.collect import MANIFEST, write_manifest

        res = Path(args.results)
        write_json(res / "grid.json", result, schema="grid")
        if (res / MANIFEST).is_file():
            write_manifest(res, read_json(res / MANIFEST, schema="manifest")["profile"], files=[res / "grid.json"])
    print({k: result[k] for k in ("wall_seconds", "speedup", "identical_results", "differing_files")})


if __name__ == "__main__":
    main()
