"""Package re-exports that import their submodule on first use (PEP 562).

The model, training, explanation and evaluation packages pull in TensorFlow, which takes seconds to
import; `tumorlens data scan` or `tumorlens config show` must not pay for it. Their ``__init__`` re-exports
the public names lazily, so ``from tumorlens.models import build_classifier`` works and ``import
tumorlens.models.weights`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` re-exporting ``{name: submodule}``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
