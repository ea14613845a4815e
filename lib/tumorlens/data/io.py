"""One image in, one array out: decoding (JPEG, PNG, ..., DICOM), the letterbox and its inverse.

Every reader returns uint8 RGB ``(H, W, 3)`` or raises `BadImageError` naming the file and the reason.
The letterbox is the paper's preprocessing: the image is resized to a square keeping its aspect ratio —
the longer side scaled, the shorter padded with black, never stretched. `unletterbox` and its variants
map a map or a mask at the model input back to the image's own resolution.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from tumorlens.errors import BadImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "BadImageError",
    "read_image",
    "is_dicom",
    "read_dicom",
    "read_any",
    "letterbox",
    "unletterbox",
    "unletterbox_mask",
    "unletterbox_cam",
    "unletterbox_to_input",
]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})


MIN_SIDE = 16  # pixels: smaller images carry no usable anatomy


MAX_PIXELS = 64_000_000  # larger images are refused before decoding (decompression bombs)
_OPEN_LOCK = threading.Lock()  # see read_image


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode half grey


# Pillow's own decompression-bomb guard stays on (its limits lie above MAX_PIXELS, which is checked
# first with a clearer reason); nothing here changes it for the rest of the process.


# one image
def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Decode an image file to ``uint8 (H, W, 3)``.

    Grayscale becomes 3 identical channels; CMYK is converted to RGB; 16-bit (and float) images
    are rescaled to 8 bits by their own min-max. Those conversions are returned as a note.

    Returns:
        ``(array, note)`` where note is None or a short description of a conversion made.

    Raises:
        BadImageError: empty, unreadable, not an image, truncated/corrupt, too small or too large.
    """
    p = Path(path)
    try:
        nbytes = p.stat().st_size
    except OSError as exc:
        raise BadImageError(p, f"cannot read file ({exc.strerror})") from None
    if nbytes == 0:
        raise BadImageError(p, "empty file (0 bytes)")
    note = None
    try:
        # Pillow warns "could be decompression bomb DOS attack" between 89 and 179 megapixels; the
        # MAX_PIXELS check below refuses such an image, naming it, so the warning only alarms. The
        # warning filters are process-wide: the lock keeps scan's threads from restoring them while
        # another thread opens a file (opening reads the header only; decoding happens outside)
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise BadImageError(
                    p, f"image too large ({w}x{h} px; the limit is {MAX_PIXELS // 1_000_000} megapixels)"
                )
            if min(w, h) < MIN_SIDE:
                raise BadImageError(p, f"image too small ({w}x{h} px; at least {MIN_SIDE} px per side needed)")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
                arr = np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)
                note = f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} image rescaled to 8-bit (min-max)"
            elif mode == "L":
                arr = np.repeat(np.asarray(im)[..., None], 3, axis=2)
            else:
                if mode == "CMYK":
                    note = "CMYK image converted to RGB"
                arr = np.asarray(im.convert("RGB"))
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(p, "not an image (file format not recognised)") from None
    except PermissionError:
        raise BadImageError(p, "permission denied (this user may not read the file)") from None
    except IsADirectoryError:
        raise BadImageError(p, "a folder, not a file") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(p, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(p, f"corrupt or truncated image data ({exc})") from None
    return np.ascontiguousarray(arr), note


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def read_dicom(path: str | os.PathLike) -> np.ndarray:
    """A DICOM slice as uint8 RGB ``(H, W, 3)``: rescale slope/intercept applied, then the slice's
    own window (centre/width) — or its min-max range when it has none.

    Raises `BadImageError` for files pydicom cannot read, without pixel data, or with several frames.
    """
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise BadImageError(path, "reading DICOM needs pydicom (a tumorlens dependency): pip install pydicom") from None
    try:
        ds = pydicom.dcmread(str(path))
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if rows * cols * frames > MAX_PIXELS:  # before decoding: compressed pixel data can be a bomb
            raise BadImageError(
                path,
                f"image too large ({cols}x{rows} px x {frames} frame(s); the limit is {MAX_PIXELS // 1_000_000} "
                "megapixels)",
            )
        arr = ds.pixel_array.astype(np.float64)
    except BadImageError:
        raise
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError, TypeError) as exc:
        raise BadImageError(path, f"not a readable DICOM image ({type(exc).__name__}: {exc})") from None
    except (RuntimeError, NotImplementedError) as exc:  # e.g. compressed pixel data without a decoder plugin
        raise BadImageError(
            path,
            f"DICOM pixel data that cannot be decoded here ({type(exc).__name__}: {exc}); "
            "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg) or export "
            "an uncompressed slice",
        ) from None
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        raise BadImageError(path, f"a multi-frame DICOM ({arr.shape[0]} frames): export single slices")
    if arr.ndim == 3:  # colour DICOM (RGB)
        return np.clip(arr[..., :3], 0, 255).astype(np.uint8)
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    centre, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if centre is not None and width is not None:
        c = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = c - w / 2, c + w / 2
    else:
        lo, hi = float(arr.min()), float(arr.max())
    scaled = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255 - scaled
    u8 = scaled.astype(np.uint8)
    if min(u8.shape) < 16:
        raise BadImageError(path, f"image too small ({u8.shape[1]}x{u8.shape[0]} px)")
    return np.repeat(u8[..., None], 3, axis=2)


def read_any(path: str | os.PathLike) -> np.ndarray:
    """JPEG/PNG/... via `tumorlens.data.read_image`, DICOM via `read_dicom`; uint8 RGB."""
    return read_any_noted(path)[0]


def read_any_noted(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """`read_any` with the conversion note `read_image` gives (16-bit rescaled, CMYK converted), or None."""
    p = Path(path)
    try:
        if is_dicom(p):
            return read_dicom(p), None
    except PermissionError:
        raise BadImageError(p, "permission denied (this user may not read the file)") from None
    return read_image(p)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``(size, size, C)`` keeping the aspect ratio: scale the longer side, pad with black."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[..., None]
    out = np.zeros((size, size, image.shape[2] if image.ndim == 3 else 1), dtype=image.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out if image.ndim == 3 else out[..., 0]


def unletterbox(arr: np.ndarray, original_hw: tuple[int, int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Undo `tumorlens.data.letterbox` for a 2-D map: crop the padding and resize to ``original_hw``."""
    size = arr.shape[0]
    h, w = original_hw
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (size - nh) // 2, (size - nw) // 2
    return cv2.resize(np.ascontiguousarray(arr[top : top + nh, left : left + nw]), (w, h), interpolation=interpolation)


def unletterbox_mask(mask: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """`unletterbox` for a bool mask (nearest neighbour)."""
    return unletterbox(np.asarray(mask, np.uint8), original_hw, cv2.INTER_NEAREST).astype(bool)


def unletterbox_cam(cam: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Undo the letterbox for a float map (bilinear)."""
    return unletterbox(np.asarray(cam, np.float32), original_hw, cv2.INTER_LINEAR)


def unletterbox_to_input(truth: np.ndarray, size: int) -> np.ndarray:
    """An original-resolution mask letterboxed to the model input (for display next to the CAM)."""

    return letterbox(truth.astype(np.uint8)[..., None].repeat(3, 2) * 255, size)[..., 0] > 127
