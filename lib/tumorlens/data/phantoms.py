"""Synthetic MRI-like phantoms: the embedded default dataset, with a ground-truth mask per image.

Each phantom is an axial "slice": a bright skull ring, a textured brain ellipse, two dark
ventricles and Gaussian noise. The four classes differ by the lesion, drawn the way the tumours
present on T1 contrast MRI:

- ``glioma``: a diffuse, irregular, heterogeneous intra-axial lesion inside the brain;
- ``meningioma``: a sharp, round, bright extra-axial mass touching the inner skull;
- ``pituitary``: a small bright lesion at the sella (midline, in front of the brain stem);
- ``notumor``: no lesion (its mask is empty).

`write_phantoms` writes the Kaggle layout (``Training/<class>/*.png``, ``Testing/<class>/*.png``)
plus ``masks/<split>/<class>/<same name>.png`` and ``phantoms.json``. A few Testing images are
copies of Training images (byte-identical or re-contrasted), mirroring the real dataset's
train/test overlap so the leakage audit has a known answer. Everything is deterministic in the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tumorlens.config import CLASSES
from tumorlens.utils.files import atomic_path, key_lock

__all__ = ["render_phantom", "write_phantoms", "PhantomSet"]


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise smoothed at ``scale`` (a fraction of the image side)."""
    field = rng.standard_normal((size, size)).astype(np.float32)
    sigma = max(0.5, scale * size)
    field = cv2.GaussianBlur(field, (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return (u / a) ** 2 + (v / b) ** 2  # < 1 inside


def render_phantom(cls: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one phantom.

    Args:
        cls: one of `tumorlens.config.CLASSES`.
        size: image side in pixels (>= 32).
        seed: any integer; the same (cls, size, seed) always gives the same arrays.

    Returns:
        ``(image, mask)``: uint8 arrays of shape ``(size, size)``; the mask is 255 on the lesion.
    """
    if cls not in CLASSES:
        raise ValueError(f"cls must be one of {CLASSES}; got {cls!r}")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32; got {size!r}")
    rng = np.random.default_rng([seed, CLASSES.index(cls), size])
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(lin, lin)

    # head geometry (normalised coordinates, y down): size, shape, position and tilt vary by slice
    cx, cy = rng.uniform(-0.12, 0.12, 2)
    a = rng.uniform(0.55, 0.80)
    b = min(0.95, a * rng.uniform(1.0, 1.3))
    theta = rng.uniform(-0.45, 0.45)
    head = _ellipse(x, y, cx, cy, a, b, theta)
    brain_scale = rng.uniform(0.82, 0.92)
    brain = _ellipse(x, y, cx, cy, a * brain_scale, b * brain_scale, theta)

    img = np.zeros((size, size), np.float32)
    img[head < 1] = rng.uniform(0.65, 0.95)  # skull + scalp (bright on T1)
    gyri = np.tanh(3 * _smooth_noise(rng, size, rng.uniform(0.03, 0.06)))
    texture = 0.05 * _smooth_noise(rng, size, 0.015) + rng.uniform(0.06, 0.14) * gyri
    inside = brain < 1
    img[inside] = rng.uniform(0.32, 0.50) + texture[inside]
    # ventricles: a symmetric pair of dark crescents near the centre, their size set by the slice level
    c, s = np.cos(theta), np.sin(theta)
    vsize = rng.uniform(0.4, 1.4)
    for side in (-1, 1):
        vx, vy = 0.10 * side * a, -0.05 * b
        px, py = cx + vx * c - vy * s, cy + vx * s + vy * c
        vent = _ellipse(x, y, px, py, 0.07 * a * vsize, 0.22 * b * vsize, theta + side * 0.25)
        img[vent < 1] = 0.12

    mask = np.zeros((size, size), bool)
    if cls == "glioma":
        # irregular union of blobs inside the brain, heterogeneous with a darker core
        ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.45)
        gx, gy = cx + rad * a * np.cos(ang), cy + rad * b * np.sin(ang)
        blob = np.zeros_like(img)
        for _ in range(rng.integers(3, 7)):
            ox, oy = rng.normal(0, 0.07, 2)
            r = rng.uniform(0.07, 0.14)
            blob += np.exp(-((x - gx - ox) ** 2 + (y - gy - oy) ** 2) / (2 * r**2))
        blob += 0.25 * _smooth_noise(rng, size, 0.03)
        mask = (blob > 0.8) & inside
        core = (blob > 1.6) & mask
        img[mask] = 0.62 + 0.10 * _smooth_noise(rng, size, 0.015)[mask]
        img[core] = 0.30
    elif cls == "meningioma":
        # sharp round bright mass touching the inner skull, pushing into the brain
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.10, 0.17)
        dist = brain_scale - r * 0.6
        mx, my = cx + dist * a * np.cos(ang), cy + dist * b * np.sin(ang)
        mask = (((x - mx) ** 2 + (y - my) ** 2) < r**2) & (head < brain_scale**-2 * 0.95) & (head < 1)
        mask &= _ellipse(x, y, cx, cy, a * 0.97 * brain_scale, b * 0.97 * brain_scale, theta) < 1.25
        img[mask] = 0.88 + 0.02 * rng.standard_normal(mask.sum())
    elif cls == "pituitary":
        # small bright lesion at the sella: midline, just below the centre
        sx, sy = cx + rng.normal(0, 0.02), cy + rng.uniform(0.25, 0.35) * b
        ra, rb = rng.uniform(0.05, 0.08), rng.uniform(0.04, 0.07)
        mask = _ellipse(x, y, sx, sy, ra, rb, rng.uniform(-0.4, 0.4)) < 1
        img[mask] = 0.78 + 0.03 * rng.standard_normal(mask.sum())

    img = cv2.GaussianBlur(img, (0, 0), max(0.4, size / 200))
    img += rng.normal(0, 0.025, img.shape).astype(np.float32)
    img *= rng.uniform(0.85, 1.15) * (1 + 0.25 * _smooth_noise(rng, size, 0.15))  # gain and coil bias field
    image = np.clip(img * 255, 0, 255).astype(np.uint8)
    return image, (mask.astype(np.uint8) * 255)


@dataclass(frozen=True)
class PhantomSet:
    """What `write_phantoms` wrote: the dataset root and the planted duplicate pairs."""

    root: Path
    duplicates: list[dict]


def write_phantoms(
    out: str | Path,
    size: int = 64,
    train_per_class: int = 60,
    test_per_class: int = 15,
    duplicates: int = 4,
    seed: int = 42,
) -> PhantomSet:
    """Write a phantom dataset in the Kaggle layout, with masks; reuse it if already complete.

    Args:
        out: dataset root to create.
        size: image side in pixels.
        train_per_class, test_per_class: images per class and split.
        duplicates: number of Testing images replaced by copies of Training images (alternately
            byte-identical and re-contrasted); recorded in ``phantoms.json``.
        seed: base seed.
    """
    out = Path(out)
    meta_file = out / "phantoms.json"
    params = {
        "size": size,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "duplicates": duplicates,
        "seed": seed,
    }

    def complete() -> PhantomSet | None:  # phantoms.json is written last: present means complete
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            if meta.get("params") == params:
                return PhantomSet(out, meta["duplicates"])
        return None

    done = complete()
    if done is not None:
        return done
    with key_lock(out):  # one writer per folder (e.g. two grid workers): the other waits, then reuses it
        done = complete()
        return done if done is not None else _write_phantoms(out, params)


def _write_phantoms(out: Path, params: dict) -> PhantomSet:
    size, train_per_class, test_per_class = params["size"], params["train_per_class"], params["test_per_class"]
    duplicates, seed = params["duplicates"], params["seed"]
    meta_file = out / "phantoms.json"
    meta_file.unlink(missing_ok=True)  # a set of other parameters is being replaced: not complete meanwhile
    if duplicates > test_per_class * len(CLASSES):
        raise ValueError(
            f"duplicates ({duplicates}) exceeds the number of Testing images ({test_per_class * len(CLASSES)})"
        )
    counter = 0
    stored: dict[tuple[str, str, int], np.ndarray] = {}
    for split, n in (("Training", train_per_class), ("Testing", test_per_class)):
        for cls in CLASSES:
            (out / split / cls).mkdir(parents=True, exist_ok=True)
            (out / "masks" / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                counter += 1
                image, mask = render_phantom(cls, size, seed * 100_003 + counter)
                stored[(split, cls, i)] = image
                name = f"ph-{split[:2].lower()}-{cls}-{i:04d}.png"
                cv2.imwrite(str(out / split / cls / name), image)
                cv2.imwrite(str(out / "masks" / split / cls / name), mask)
    # plant duplicates: Testing image k of class c := Training image k of class c (exact or re-contrasted)
    dups = []
    for k in range(duplicates):
        cls, i = CLASSES[k % len(CLASSES)], k // len(CLASSES)
        name_tr, name_te = f"ph-tr-{cls}-{i:04d}.png", f"ph-te-{cls}-{i:04d}.png"
        exact = k % 2 == 0
        src = out / "Training" / cls / name_tr
        if exact:
            (out / "Testing" / cls / name_te).write_bytes(src.read_bytes())
        else:
            img = stored[("Training", cls, i)].astype(np.float32) / 255
            img = np.clip(255 * (0.9 * img**0.8 + 0.03), 0, 255).astype(np.uint8)
            cv2.imwrite(str(out / "Testing" / cls / name_te), img)
        (out / "masks" / "Testing" / cls / name_te).write_bytes(
            (out / "masks" / "Training" / cls / name_tr).read_bytes()
        )
        dups.append(
            {
                "testing": f"Testing/{cls}/{name_te}",
                "training": f"Training/{cls}/{name_tr}",
                "kind": "exact" if exact else "near",
            }
        )
    with atomic_path(meta_file) as tmp:
        tmp.write_text(json.dumps({"generator": "tumorlens.phantoms", "params": params, "duplicates": dups}, indent=2))
    return PhantomSet(out, dups)
