"""Read a PyTorch state dict saved in the legacy (non-zip) pickle format, without torch.

Only what a plain state dict needs: tensors of the standard dtypes inside (ordered) dicts. The
unpickler resolves a fixed allow-list of names, so the file cannot run arbitrary code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

__all__ = ["load_legacy_state_dict"]

_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        base = self.storage.data
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view)  # own the memory


def _rebuild_tensor_v2(storage, offset, size, stride, *_args):
    return _LazyTensor(storage, offset, size, stride)


class _DataOnly(pickle.Unpickler):
    """Plain data only (numbers, strings, lists, dicts): any global or persistent id is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected persistent id in a weights file header")


def _data(f):
    return _DataOnly(f).load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, *_ = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        dtype = _DTYPES[storage_type if isinstance(storage_type, str) else storage_type.__name__]
        if key not in self._storages:
            self._storages[key] = _Storage(dtype, numel)
        return self._storages[key]


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: ndarray}`` from a legacy-format ``torch.save`` file (e.g. ``*.pth`` before PyTorch 1.6)."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(2)[:1] != b"\x80":
            raise ValueError(f"{path}: not a legacy PyTorch pickle (a zip-format file needs torch.load)")
        f.seek(0)
        magic = _data(f)  # every pickle in the file goes through a restricted unpickler
        if magic != _MAGIC:
            raise ValueError(f"{path}: wrong magic number {magic!r}")
        _data(f)  # protocol version
        _data(f)  # sys info
        storages: dict = {}
        obj = _Unpickler(f, storages).load()
        keys = _data(f)
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * np.dtype(st.dtype).itemsize
            st.data = np.frombuffer(f.read(nbytes), dtype=st.dtype, count=numel)
    return {k: v.array() for k, v in obj.items()}
