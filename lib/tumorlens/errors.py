"""The errors tumorlens reports to a user, in one place: each message names the file or setting and what to do.

The `tumorlens` command prints any of them as ``tumorlens: error: ...`` and exits with status 2. Each also
derives from the built-in exception it refines, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os

__all__ = [
    "TumorlensError",
    "ConfigError",
    "UsageError",
    "OutputLockedError",
    "DatasetNotFoundError",
    "BadImageError",
    "WeightsUnavailableError",
    "NotebookFailed",
]


class TumorlensError(Exception):
    """Base of the errors below."""


class ConfigError(TumorlensError, ValueError):
    """A key or value in the experiment settings is wrong; the message names both."""


class UsageError(TumorlensError, ValueError):
    """Options or arguments that do not fit together or lie outside their range; the message names the
    option and the value received (the command exits 2, as for argparse's own usage errors)."""


class OutputLockedError(TumorlensError, RuntimeError):
    """An output folder another running process is writing into (its lock file names the process)."""


class DatasetNotFoundError(TumorlensError, FileNotFoundError):
    """The dataset folder is missing or holds no images; the message says how to get the data."""


class BadImageError(TumorlensError, ValueError):
    """One file cannot be used as an image; ``reason`` says why in words."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class WeightsUnavailableError(TumorlensError, RuntimeError):
    """Pretrained weights could not be obtained; the message says which file and where to put it."""


class NotebookFailed(TumorlensError, RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""
