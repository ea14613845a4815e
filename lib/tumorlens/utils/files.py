"""Small file helpers shared by every stage: atomic writes, JSON, and fingerprints of sets of files.

A file written here is either complete or absent: the writer fills a uniquely named temporary file beside the
target and renames it into place (`os.replace` is atomic within one file system). A reader never sees half a
file, a crash leaves the previous version, and two processes writing the same key never mix their bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from tumorlens.utils.schema import check, stamp

__all__ = [
    "updating",
    "atomic_path",
    "key_lock",
    "cached",
    "write_text",
    "write_json",
    "read_json",
    "save_npy",
    "save_npz",
    "hash_files",
    "file_entry",
    "matches_entry",
]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process umask, read once (reading it means setting it; doing that per write races with threads).
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


#: The longest file name (bytes, as UTF-8) common file systems take.
NAME_MAX = 255


def _cut(name: str, limit: int) -> str:
    """``name`` shortened to at most ``limit`` bytes of UTF-8, never inside a character."""
    b = name.encode("utf-8", "surrogateescape")
    return name if len(b) <= limit else b[: max(limit, 0)].decode("utf-8", "ignore")


@contextlib.contextmanager
def updating(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``path`` (a record several commands add to, e.g. ``lesion.json``) for a read-merge-write: an
    exclusive ``flock`` on ``.<name>.lock`` beside it (hidden: no manifest lists it) that waits for another
    holder and is released when the block ends or the process dies, so two commands updating the record
    at once both keep their entries. Not POSIX: no lock (the block still runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``, else it is removed.

    ``suffix`` ends the temporary name (``.npy``/``.npz``: NumPy appends its own extension otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name must fit in a file name (255 bytes) whatever the target's: a long name is cut
    room = NAME_MAX - len(f"..{'x' * 8}.tmp{suffix}".encode())
    fd, name = tempfile.mkstemp(prefix=f".{_cut(path.name, room)}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be read by others
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def key_lock(path: str | os.PathLike) -> Iterator[None]:
    """One writer per cache key: hold an exclusive lock on ``.<name>.lock`` beside ``path`` for the block.

    A second process (another grid worker) asking for the same key waits, then finds the entry the first
    wrote -- check for it inside the block. Where locks are unavailable (no ``fcntl``, a file system
    refusing them) the block runs unlocked: entries are still replaced atomically, so the worst case is
    computing one twice, never reading half of one.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


T = TypeVar("T")


def cached(
    path: str | os.PathLike, load: Callable[[Path], T | None], compute: Callable[[], T], save: Callable[[Path, T], Any]
) -> T:
    """The cache entry at ``path``: ``load(path)`` when it is there and usable (not None, no read error),
    else ``compute()`` -- once across processes (`key_lock`) -- stored by ``save(path, value)``, which
    must write atomically (`save_npy`, `save_npz`, `write_json`). A cache that cannot be written is skipped."""
    path = Path(path)

    def usable() -> T | None:
        if not path.is_file():
            return None
        try:
            return load(path)
        except (OSError, ValueError, KeyError):
            return None

    value = usable()
    if value is not None:
        return value
    with key_lock(path):
        value = usable()  # written by another process while this one waited
        if value is not None:
            return value
        value = compute()
        try:
            save(path, value)
        except OSError:
            pass
        return value


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, schema: str | None = None) -> Path:
    """Write ``obj`` as indented JSON (NumPy scalars and arrays and paths converted), atomically.

    ``schema``: a results kind of `tumorlens.utils.schema.SCHEMAS`; the file then carries its name and version.
    """
    if schema:
        obj = stamp(obj, schema)
    return write_text(path, json.dumps(obj, indent=2, default=_default))


def read_json(path: str | os.PathLike, *, schema: str | None = None) -> Any:
    """The JSON in ``path``; with ``schema``, checked to be a current file of that kind (else `SchemaError`
    naming the file). A file that is not JSON raises ValueError naming it."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path.as_posix()}: not valid JSON ({e}); a partly written or edited results file") from e
    return check(obj, schema, path) if schema else obj


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, array)
    return Path(path)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def file_entry(path: str | os.PathLike) -> dict:
    """``{"bytes", "sha256"}`` of a file, as the results and models manifests list it."""
    path = Path(path)
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def matches_entry(path: str | os.PathLike, entry: dict) -> bool:
    """Whether ``path`` still has the size and sha256 a manifest ``entry`` recorded (size first: cheap)."""
    path = Path(path)
    return path.stat().st_size == entry["bytes"] and file_entry(path)["sha256"] == entry["sha256"]


def hash_files(h, entries: Iterable[tuple[str, Path]]):
    """Feed ``label|size|mtime`` of each ``(label, file)`` into the hash ``h`` (a cheap content stamp: a file
    that is replaced or touched changes it); returns ``h``."""
    for label, file in entries:
        st = Path(file).stat()
        h.update(f"{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h


def _default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
