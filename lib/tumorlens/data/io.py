"""One image in, one array out: decoding (JPEG, PNG, ..., DICOM), the letterbox and its inverse.

Every reader returns uint8 RGB ``(H, W, 3)`` or raises `BadImageError` naming the file and the reason.
`decode` also says what the reader had to do (a note) and how many pixels were NaN or infinite in the
file (set to black; `tumorlens.evaluation.guard` flags such an image). An image's EXIF orientation is
applied (phones and some exporters store the pixels sideways and the turn in the tag); a DICOM's rescale
and window tags must be usable (a zero or non-finite slope, a non-finite or non-positive window is refused,
never replaced by a default); every photometric form obeys the same minimum size.
The letterbox is the paper's preprocessing: the image is resized to a square keeping its aspect ratio —
the longer side scaled, the shorter padded with black, never stretched. `unletterbox` and its variants
map a map or a mask at the model input back to the image's own resolution.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tumorlens.errors import BadImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "BadImageError",
    "DECODE_VERSION",
    "Decoded",
    "decode",
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


#: Bumped whenever a file decodes to other pixels than before (2: EXIF orientation applied, non-finite
#: pixels counted); caches of decoded images and scans include it in their keys.
DECODE_VERSION = 2


@dataclass(frozen=True)
class Decoded:
    """A decoded file: ``array`` uint8 ``(H, W, 3)``; ``note`` a conversion made (or None); ``nonfinite``
    how many pixels were NaN or infinite in the file (set to black)."""

    array: np.ndarray
    note: str | None = None
    nonfinite: int = 0


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def _to_uint8(path, a: np.ndarray) -> tuple[np.ndarray, int]:
    """Min-max rescale a float array to uint8 over its finite values; non-finite ones become 0.
    ``(array, how many were non-finite)``; `BadImageError` when none is finite."""
    finite = np.isfinite(a)
    n_bad = int(a.size - np.count_nonzero(finite))
    if n_bad == a.size:
        raise BadImageError(path, "no finite pixel value (every pixel is NaN or infinite)")
    vals = a[finite] if n_bad else a
    lo, hi = float(vals.min()), float(vals.max())
    out = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    if n_bad:
        out = np.where(finite, out, 0)
    return np.clip(out, 0, 255).astype(np.uint8), n_bad


def _nonfinite_note(n: int) -> str | None:
    return f"{n} NaN or infinite pixel value(s) set to black" if n else None


#: EXIF orientation values (tag 0x0112) and what applying them does.
_ORIENTATIONS = {
    2: "mirrored",
    3: "rotated 180 degrees",
    4: "flipped upside down",
    5: "transposed",
    6: "rotated 90 degrees clockwise",
    7: "transversed",
    8: "rotated 90 degrees counter-clockwise",
}


MAX_PIXELS = 64_000_000  # larger images are refused before decoding (decompression bombs)
_OPEN_LOCK = threading.Lock()  # see read_image


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode half grey


# Pillow's own decompression-bomb guard stays on (its limits lie above MAX_PIXELS, which is checked
# first with a clearer reason); nothing here changes it for the rest of the process.


# one image
def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Decode an image file to ``uint8 (H, W, 3)``.

    Grayscale becomes 3 identical channels; CMYK is converted to RGB; 16-bit (and float) images
    are rescaled to 8 bits by their own min-max (over their finite values: NaN and infinite pixels become
    black); an EXIF orientation is applied. Those conversions are returned as a note.

    Returns:
        ``(array, note)`` where note is None or a short description of a conversion made.

    Raises:
        BadImageError: empty, unreadable, not an image, truncated/corrupt, too small or too large, or
        without one finite pixel value.
    """
    d = _decode_image(path)
    return d.array, d.note


def _decode_image(path: str | os.PathLike) -> Decoded:
    p = Path(path)
    try:
        nbytes = p.stat().st_size
    except OSError as exc:
        raise BadImageError(p, f"cannot read file ({exc.strerror})") from None
    if nbytes == 0:
        raise BadImageError(p, "empty file (0 bytes)")
    note, nonfinite = None, 0
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
            turned = None
            orientation = im.getexif().get(0x0112)
            if orientation in _ORIENTATIONS:
                im = ImageOps.exif_transpose(im)
                turned = f"EXIF orientation {orientation} applied ({_ORIENTATIONS[orientation]})"
            elif orientation not in (None, 1):
                turned = f"EXIF orientation {orientation!r} is not a valid value (1-8): not applied"
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a, nonfinite = _to_uint8(p, np.asarray(im, dtype=np.float64))
                arr = np.repeat(a[..., None], 3, axis=2)
                note = f"{'16-bit' if mode.startswith('I;16') else mode + '-mode'} image rescaled to 8-bit (min-max)"
            elif mode == "L":
                arr = np.repeat(np.asarray(im)[..., None], 3, axis=2)
            else:
                if mode == "CMYK":
                    note = "CMYK image converted to RGB"
                arr = np.asarray(im.convert("RGB"))
            note = _join(turned, note, _nonfinite_note(nonfinite))
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
    return Decoded(np.ascontiguousarray(arr), note, nonfinite)


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
    own window (centre/width) -- or its min-max range when it has none. Colour slices (RGB, YBR as pydicom
    converts them, PALETTE COLOR through its lookup table) keep their colours, scaled to 8 bits.

    Raises `BadImageError` for files pydicom cannot read, without pixel data, with several frames, smaller
    than `MIN_SIDE` in any photometric form, with a zero or non-finite RescaleSlope, a non-finite
    RescaleIntercept, a non-finite or non-positive window, or no finite pixel value.
    """
    return _decode_dicom(path).array


def _tag_number(ds, keyword: str):
    """A numeric tag's (first) value as float, or None when absent or empty."""
    v = ds.get(keyword, None)
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        if not len(v):
            return None
        v = v[0]
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _decode_dicom(path: str | os.PathLike) -> Decoded:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise BadImageError(path, "reading DICOM needs pydicom (a tumorlens dependency): pip install pydicom") from None
    try:
        with warnings.catch_warnings():  # invalid tag values warn; the checks below name what matters
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(str(path))
            rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            if rows * cols * frames > MAX_PIXELS:  # before decoding: compressed pixel data can be a bomb
                raise BadImageError(
                    path,
                    f"image too large ({cols}x{rows} px x {frames} frame(s); the limit is "
                    f"{MAX_PIXELS // 1_000_000} megapixels)",
                )
            if frames > 1:
                raise BadImageError(path, f"a multi-frame DICOM ({frames} frames): export single slices")
            photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").upper()
            arr = ds.pixel_array
            if photometric == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut

                arr = apply_color_lut(arr, ds)
            arr = arr.astype(np.float64)
    except BadImageError:
        raise
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError, TypeError, IndexError) as exc:
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
    if arr.ndim not in (2, 3):
        raise BadImageError(path, f"pixel data of shape {arr.shape}: not a single slice")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise BadImageError(path, f"image too small ({w}x{h} px; at least {MIN_SIDE} px per side needed)")
    if arr.ndim == 3:  # colour: RGB (YBR arrives converted by pydicom), or PALETTE COLOR through its table
        finite = np.isfinite(arr)
        nonfinite = int(arr.size - np.count_nonzero(finite)) // 3 if not finite.all() else 0
        if not finite.any():
            raise BadImageError(path, "no finite pixel value (every pixel is NaN or infinite)")
        arr = np.where(finite, arr, 0)[..., :3]
        top = float(arr.max())
        bits = 16 if photometric == "PALETTE COLOR" and top > 255 else int(getattr(ds, "BitsStored", 8) or 8)
        note = None
        if top > 255:
            arr = arr * 255 / (2 ** min(bits, 32) - 1)
            note = f"{bits}-bit colour DICOM scaled to 8 bits"
        return Decoded(np.clip(arr, 0, 255).astype(np.uint8), _join(note, _nonfinite_note(nonfinite)), nonfinite)
    if photometric not in ("MONOCHROME1", "MONOCHROME2", ""):
        raise BadImageError(path, f"photometric interpretation {photometric!r} with one sample per pixel: not read")
    slope, intercept = _tag_number(ds, "RescaleSlope"), _tag_number(ds, "RescaleIntercept")
    if slope is not None and (not math.isfinite(slope) or slope == 0):
        raise BadImageError(path, f"RescaleSlope {slope!r} cannot rescale the stored values (zero or not finite)")
    if intercept is not None and not math.isfinite(intercept):
        raise BadImageError(path, f"RescaleIntercept {intercept!r} is not a finite number")
    finite = np.isfinite(arr)
    nonfinite = int(arr.size - np.count_nonzero(finite))
    if nonfinite == arr.size:
        raise BadImageError(path, "no finite pixel value (every pixel is NaN or infinite)")
    arr = arr * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)
    centre, width = _tag_number(ds, "WindowCenter"), _tag_number(ds, "WindowWidth")
    if centre is not None and width is not None:
        if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
            raise BadImageError(
                path,
                f"window WindowCenter={centre!r} WindowWidth={width!r} is not usable (not finite, or width <= 0); "
                "fix the tags or remove them (the slice's own range is then used)",
            )
        lo, hi = centre - width / 2, centre + width / 2
    else:
        vals = arr[finite] if nonfinite else arr
        lo, hi = float(vals.min()), float(vals.max())
    scaled = np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    if nonfinite:
        scaled = np.where(finite, scaled, 0)
    if photometric == "MONOCHROME1":
        scaled = 255 - scaled
        if nonfinite:  # black stays black
            scaled = np.where(finite, scaled, 0)
    u8 = scaled.astype(np.uint8)
    return Decoded(np.repeat(u8[..., None], 3, axis=2), _nonfinite_note(nonfinite), nonfinite)


def read_any(path: str | os.PathLike) -> np.ndarray:
    """JPEG/PNG/... via `tumorlens.data.read_image`, DICOM via `read_dicom`; uint8 RGB."""
    return read_any_noted(path)[0]


def read_any_noted(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """`read_any` with the conversion note `read_image` gives (16-bit rescaled, CMYK converted), or None."""
    d = decode(path)
    return d.array, d.note


def decode(path: str | os.PathLike) -> Decoded:
    """Any supported file (image or DICOM) as a `Decoded`: the uint8 RGB array, the conversion note and
    the count of non-finite pixels. Raises `BadImageError` naming the file and the reason."""
    p = Path(path)
    try:
        if is_dicom(p):
            return _decode_dicom(p)
    except PermissionError:
        raise BadImageError(p, "permission denied (this user may not read the file)") from None
    return _decode_image(p)


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
