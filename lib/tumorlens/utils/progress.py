"""Progress bars for long work (tqdm; the notebook widget inside Jupyter, text elsewhere)."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")

__all__ = ["progress"]


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False
) -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar; ``TUMORLENS_PROGRESS=0`` turns all bars off."""
    if disable or os.environ.get("TUMORLENS_PROGRESS", "1") == "0":
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5)
