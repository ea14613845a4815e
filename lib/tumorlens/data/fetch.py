"""Download the Kaggle "Brain Tumor MRI Dataset" with kagglehub (needs network; credentials for
some Kaggle setups). Never falls back to anything silently: on failure the error says what to do."""

from __future__ import annotations

import os
from pathlib import Path

from tumorlens import paths
from tumorlens.data.inventory import GET_DATA_HELP, DatasetNotFoundError

__all__ = ["KAGGLE_HANDLE", "fetch_kaggle"]

KAGGLE_HANDLE = "masoudnickparvar/brain-tumor-mri-dataset"


def fetch_kaggle(dest: str | os.PathLike | None = None) -> Path:
    """Download the dataset into kagglehub's cache and link it at ``dest`` (default
    ``data/brain-tumor-mri``). Returns ``dest``. Raises `DatasetNotFoundError` with what to do."""
    dest = Path(dest) if dest else paths.repo_root() / "data" / "brain-tumor-mri"
    if (dest / "Training").is_dir() and (dest / "Testing").is_dir():
        return dest
    try:
        import kagglehub
    except ImportError:
        raise DatasetNotFoundError(
            "kagglehub is not installed: `pip install 'tumorlens[kaggle]'` (or `pip install kagglehub`), "
            f"then run `tumorlens data fetch` again. {GET_DATA_HELP}"
        ) from None
    try:
        src = Path(kagglehub.dataset_download(KAGGLE_HANDLE))
    except Exception as exc:  # network, credentials, quota: kagglehub raises many kinds
        raise DatasetNotFoundError(
            f"kagglehub could not download {KAGGLE_HANDLE!r} ({type(exc).__name__}: {exc}). "
            "Check the network and, if Kaggle asks for it, your credentials (~/.kaggle/kaggle.json or "
            f"KAGGLE_USERNAME/KAGGLE_KEY). {GET_DATA_HELP}"
        ) from None
    if not (src / "Training").is_dir():
        found = [p for p in src.rglob("Training") if p.is_dir()]
        if not found:
            raise DatasetNotFoundError(f"the download at {src} has no Training/ folder. {GET_DATA_HELP}")
        src = found[0].parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or not dest.exists():
        if dest.is_symlink():
            dest.unlink()
        dest.symlink_to(src, target_is_directory=True)
    else:
        raise DatasetNotFoundError(
            f"{dest} exists but is not a complete dataset; move it away and retry (the download is at {src})"
        )
    return dest
