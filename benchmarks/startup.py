"""Benchmark (not a test): how long the `tumorlens` command takes to start, and `predict` to answer one image.

    python benchmarks/startup.py [--repeats 5] [--out DIR]

Each measurement is a fresh process, timed from outside (wall clock), the fastest of ``--repeats``
(warm file-system cache, as a user's second call):

* ``tumorlens --help`` -- parsing imports no stage (no NumPy, no TensorFlow);
* ``tumorlens data scan --help`` and ``tumorlens config show`` -- commands that need no model;
* ``tumorlens predict ONE.png`` with the published model (no --model), and with ``--segment``: the whole
  command, start-up included (TensorFlow import, rebuilding the model from its recipe, loading the weights,
  the input guard's statistics), on one 256 px phantom;
* the start-up alone, in-process: importing `tumorlens.experiments.predict` and `Predictor.published()`.

Writes ``startup_<profile>.json`` (profile: the published models' profile).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _best(cmd: list[str], repeats: int, env: dict) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"best_s": round(min(times), 3), "median_s": round(sorted(times)[len(times) // 2], 3), "runs": len(times)}


def main() -> None:
    import cv2

    from tumorlens.data.phantoms import render_phantom
    from tumorlens.experiments.published import PUBLISHED_PROFILE
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    exe = [sys.executable, "-m", "tumorlens.cli"]
    cli = Path(sys.executable).parent / "tumorlens"
    if cli.is_file():
        exe = [str(cli)]
    env = {**os.environ, "TUMORLENS_PROGRESS": "0"}
    res: dict = {"command": "tumorlens" if cli.is_file() else "python -m tumorlens.cli"}
    res["help"] = _best([*exe, "--help"], args.repeats, env)
    res["data_scan_help"] = _best([*exe, "data", "scan", "--help"], args.repeats, env)
    res["config_show"] = _best([*exe, "config", "show", "--profile", "cpu"], args.repeats, env)
    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "in" / "scan.png"
        scan.parent.mkdir()
        cv2.imwrite(str(scan), render_phantom("glioma", 256, 0)[0])
        outs = iter(range(10_000))
        for key, extra in (("predict_one", []), ("predict_one_segment", ["--segment"])):
            times = []
            for _ in range(max(2, args.repeats // 2)):
                out = Path(tmp) / f"out{next(outs)}"
                t0 = time.perf_counter()
                r = subprocess.run([*exe, "predict", str(scan), "--out", str(out), "--quiet", *extra], env=env)
                times.append(time.perf_counter() - t0)
                if r.returncode != 0:
                    raise SystemExit(f"predict failed ({r.returncode})")
            res[key] = {"best_s": round(min(times), 2), "runs": len(times)}
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from tumorlens.experiments.predict import Predictor\n"
        "t1 = time.perf_counter(); p = Predictor.published(); t2 = time.perf_counter()\n"
        "print(round(t1 - t0, 2), round(t2 - t1, 2), p.guard is not None)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    imp, load, guard = r.stdout.split()
    res["in_process"] = {
        "import_predict_s": float(imp),
        "load_published_s": float(load),
        "guard_loaded": guard == "True",
    }
    res["profile"] = PUBLISHED_PROFILE
    res["environment"] = environment()
    out = write_json(Path(args.out) / f"startup_{PUBLISHED_PROFILE}.json", res)
    for k, v in res.items():
        if isinstance(v, dict) and k != "environment":
            print(f"{k:22s} {v}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
