"""Where things live: repository root, settings file, dataset, runs, results and cache.

Environment variables (all optional):

- ``TUMORLENS_CONFIG``  the settings file (default: ``_config.yml`` at the repository root)
- ``TUMORLENS_DATA``    the dataset root (default: ``data/brain-tumor-mri`` in the repository)
- ``TUMORLENS_RUNS``    the output root for runs (default: ``runs/`` in the repository)
- ``TUMORLENS_CACHE``   decoded-image, feature and weight caches
                         (default: ``$XDG_CACHE_HOME/tumorlens`` or ``~/.cache/tumorlens``)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "config_file", "resolve", "default_data_root", "cache_root", "results_root", "relative"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout holding ``_config.yml``: the package's own checkout, else the working folder's."""
    candidates = [_PACKAGE_DIR.parent.parent, *[p for p in [Path.cwd(), *Path.cwd().parents]]]
    for c in candidates:
        if (c / "_config.yml").is_file() and (c / "lib" / "tumorlens").is_dir():
            return c
    for c in candidates:
        if (c / "_config.yml").is_file():
            return c
    return Path.cwd()


def config_file() -> Path:
    env = os.environ.get("TUMORLENS_CONFIG")
    return Path(env).expanduser() if env else repo_root() / "_config.yml"


def resolve(p: str | os.PathLike) -> Path:
    """A path from the settings: ``~`` expanded, relative paths taken from the repository root."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else repo_root() / path


def default_data_root() -> Path:
    env = os.environ.get("TUMORLENS_DATA")
    return resolve(env) if env else repo_root() / "data" / "brain-tumor-mri"


def results_root() -> Path:
    """The published results (``results/<profile>/``); ``$TUMORLENS_RESULTS`` puts them elsewhere (a study
    that must not touch the committed ones, a test)."""
    env = os.environ.get("TUMORLENS_RESULTS")
    return resolve(env) if env else repo_root() / "results"


def models_root() -> Path:
    """The published trained models (``models/<profile>/``), kept apart from the compact results."""
    return repo_root() / "models"


def cache_root() -> Path:
    env = os.environ.get("TUMORLENS_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        root = (Path(base) if base else Path.home() / ".cache") / "tumorlens"
    return root


def relative(p: str | os.PathLike) -> str:
    """``p`` relative to the repository when it lies inside it (for records that travel), else as given."""
    q = Path(p).expanduser().resolve()
    root = repo_root().resolve()
    return str(q.relative_to(root)) if q.is_relative_to(root) else str(p)
