"""Benchmark (not a test): what makes a training step reproducible, and what it costs.

    python benchmarks/determinism.py [--steps 12] [--size 96] [--batch 16] [--out DIR]

Trains the cpu profile's network (EfficientNet-Lite0 + SBR, random weights, so nothing is downloaded)
for a few steps on seeded random data, once per setting, each in a fresh Python process, and records
the seconds per step and a hash of the trained weights. Settings:

- ``default``: TensorFlow as installed (oneDNN kernels on for x86); ``*_again``: the same setting in
  another process (is it reproducible at all?).
- ``op_determinism``: `tf.config.experimental.enable_op_determinism()` alone.
- ``deterministic``: op determinism and one inter-op thread (what ``train.deterministic`` sets): ops no
  longer race each other on the thread pool.
- ``*_isa_avx2``: oneDNN capped at AVX2 (``ONEDNN_MAX_CPU_ISA``): the same code on an older CPU, a
  stand-in for "another machine" on one machine.
- ``*_1thread``: one intra-op thread (a machine with another core count).
- ``*_onednn_off``: ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's own Eigen kernels).

Two settings with equal hashes trained bit-identical weights. Writes ``determinism_cpu.json``: the
latest invocation at the top level and every invocation so far under ``invocations`` (the variation
without the settings is intermittent, so one invocation may show all processes agreeing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {  # repeats interleaved, so a slow spell of a shared machine hits every setting alike
    "default": {},
    "deterministic": {"DETERMINISM": "1", "INTER": "1"},
    "op_determinism": {"DETERMINISM": "1"},
    "default_again": {},
    "deterministic_again": {"DETERMINISM": "1", "INTER": "1"},
    "op_determinism_again": {"DETERMINISM": "1"},
    "default_again_2": {},
    "deterministic_again_2": {"DETERMINISM": "1", "INTER": "1"},
    "op_determinism_again_2": {"DETERMINISM": "1"},
    "deterministic_isa_avx2": {"DETERMINISM": "1", "INTER": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "deterministic_1thread": {"DETERMINISM": "1", "INTER": "1", "THREADS": "1"},
    "deterministic_onednn_off": {"DETERMINISM": "1", "INTER": "1", "TF_ENABLE_ONEDNN_OPTS": "0"},
    "deterministic_onednn_off_again": {"DETERMINISM": "1", "INTER": "1", "TF_ENABLE_ONEDNN_OPTS": "0"},
}


def child(steps: int, size: int, batch: int) -> None:
    """One setting, in this process: train, print a JSON line with the timing and the weights' hash."""
    import hashlib
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    threads = int(os.environ.get("THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    if os.environ.get("INTER"):
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["INTER"]))
    if os.environ.get("DETERMINISM") == "1":
        tf.config.experimental.enable_op_determinism()
    from tumorlens.models.classifier import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("efficientnet_lite0", ["sbr"], image_size=size, weights="none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, steps * batch), 4)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    per_step = (time.perf_counter() - t0) / steps
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    print(json.dumps({"seconds_per_step": round(per_step, 4), "weights_sha256": h.hexdigest()[:16]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.steps, args.size, args.batch)
        return
    from tumorlens.utils.environment import cpu_model, environment
    from tumorlens.utils.files import read_json, write_json

    rows = {}
    for name, env in SETTINGS.items():
        cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--size", str(args.size)]
        cmd += ["--batch", str(args.batch)]
        out = subprocess.run(
            cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}, capture_output=True, text=True, check=True
        )
        rows[name] = {"env": env, **json.loads(out.stdout.strip().splitlines()[-1])}
        print(name, rows[name], flush=True)
    fastest: dict[str, float] = {}  # per setting, the fastest of its repeats (the least disturbed)
    for name, r in rows.items():
        key = name.split("_again")[0]
        fastest[key] = min(fastest.get(key, float("inf")), r["seconds_per_step"])
    cost = {k: round(v / fastest["default"], 3) for k, v in fastest.items()}
    groups: dict[str, list[str]] = {}
    for name, r in rows.items():
        groups.setdefault(r["weights_sha256"], []).append(name)
    result = {
        "benchmark": "determinism",
        "steps": args.steps,
        "image_size": args.size,
        "batch": args.batch,
        "cpu_model": cpu_model(),
        "settings": rows,
        "fastest_seconds_per_step": fastest,
        "time_relative_to_default": cost,
        "identical_groups": sorted(groups.values(), key=len, reverse=True),
        "environment": environment(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / "determinism_cpu.json"
    # the variation is intermittent: keep every invocation (the latest first), not only the last
    old = read_json(f) if f.is_file() else {}
    earlier = old.get("invocations") or ([{k: v for k, v in old.items() if k != "schema"}] if "settings" in old else [])
    write_json(f, {**result, "invocations": [result, *earlier]})
    print(json.dumps(result["identical_groups"]))


if __name__ == "__main__":
    main()
