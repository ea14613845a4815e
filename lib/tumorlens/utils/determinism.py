"""Run-to-run reproducibility of TensorFlow on one machine, and what a run records about it.

Measured (``benchmarks/determinism.py``, results in ``benchmarks/results/determinism_cpu.json``): with
TensorFlow's defaults two processes training the same seeded model on the same data can end with
different weights (intermittently); `tf.config.experimental.enable_op_determinism` makes each op
deterministic but independent ops may still race on the inter-op thread pool. Op determinism **and
one inter-op thread** (``train.deterministic: true``, the default) gave every process the same weights. Across
machines results still depend on the intra-op thread count (``train.threads`` fixes it) and on the
instruction set oneDNN picks for the CPU (``ONEDNN_MAX_CPU_ISA`` caps it, e.g. ``AVX2``); both are
recorded with the CPU model in every run's ``config.json`` so a reader can tell which applies.

The thread pools can be sized only before TensorFlow's runtime starts; `configure` sets the
``TF_NUM_INTEROP_THREADS`` / ``TF_NUM_INTRAOP_THREADS`` variables as well, so processes started from
this one (papermill kernels) start with them, and records what this process actually runs with.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["configure", "settings"]


def configure(deterministic: bool = True, threads: int = 0) -> dict[str, Any]:
    """Make TensorFlow deterministic in this process (as far as it can still be) and return `settings`.

    Args:
        deterministic: enable op determinism and use one inter-op thread.
        threads: intra-op threads (0: TensorFlow's default, all cores).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0: all cores); received threads={threads!r}")
    import tensorflow as tf

    if deterministic:
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        _set_threads(tf.config.threading.set_inter_op_parallelism_threads, 1)
        tf.config.experimental.enable_op_determinism()
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        _set_threads(tf.config.threading.set_intra_op_parallelism_threads, threads)
    return settings()


def _set_threads(setter, n: int) -> None:
    try:
        setter(n)
    except RuntimeError:  # the runtime already started: the pools keep their size (recorded by `settings`)
        pass


def _op_determinism_enabled() -> bool:
    try:  # not in tf.config's public namespace; enable_op_determinism sets the same flag
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_DETERMINISTIC_OPS", "0").lower() in ("1", "true")


def _threads(configured: int, env: str) -> int:
    """The pool size in effect: the configured one, else the variable TensorFlow read when its runtime
    started (0: its default, every core)."""
    if configured:
        return int(configured)
    try:
        return max(0, int(os.environ.get(env, "0")))
    except ValueError:
        return 0


def settings() -> dict[str, Any]:
    """What this process runs with: op determinism, the thread pools, the oneDNN switches."""
    import tensorflow as tf

    return {
        "op_determinism": _op_determinism_enabled(),
        "inter_op_threads": _threads(tf.config.threading.get_inter_op_parallelism_threads(), "TF_NUM_INTEROP_THREADS"),
        "intra_op_threads": _threads(tf.config.threading.get_intra_op_parallelism_threads(), "TF_NUM_INTRAOP_THREADS"),
        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
        "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }
