"""The data stage: files -> checked records -> splits -> decoded arrays and batches.

    io         one image: decode (JPEG/PNG/.../DICOM), letterbox and its inverse
    inventory  a folder: every image found, every bad file named with its reason (`scan`)
    splits     official / paper / grouped train-val-test splits
    leakage    the leakage audit: exact and near duplicates, the de-duplicated test subset (`audit`)
    phantoms   the embedded synthetic dataset (the smoke profile)
    fetch      the Kaggle download (kagglehub)
    pipeline   cached arrays, the paper's augmentation, tf.data
    prepared   all of the above for a run's settings (`prepare`)

Typical use::

    report = scan("data/brain-tumor-mri")          # bad files are listed in report.bad, never raised
    splits = make_splits(report, "official", seed=42)
    x = load_images(splits["train"], size=224)     # uint8 (N, 224, 224, 3), cached on disk
"""

from tumorlens.data.fetch import fetch_kaggle
from tumorlens.data.inventory import GET_DATA_HELP, DatasetNotFoundError, ImageRecord, ScanReport, scan
from tumorlens.data.io import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    BadImageError,
    is_dicom,
    letterbox,
    read_any,
    read_any_noted,
    read_dicom,
    read_image,
    unletterbox,
    unletterbox_cam,
    unletterbox_mask,
)
from tumorlens.data.leakage import AuditReport, audit, dedup_subset
from tumorlens.data.phantoms import render_phantom, write_phantoms
from tumorlens.data.pipeline import augment_views, augmentation, load_images, make_dataset
from tumorlens.data.prepared import Prepared, prepare
from tumorlens.data.splits import labels_of, make_splits, split_counts

__all__ = [
    "AuditReport",
    "audit",
    "dedup_subset",
    "fetch_kaggle",
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "is_dicom",
    "letterbox",
    "read_any",
    "read_any_noted",
    "read_dicom",
    "read_image",
    "unletterbox",
    "unletterbox_cam",
    "unletterbox_mask",
    "render_phantom",
    "write_phantoms",
    "augment_views",
    "augmentation",
    "load_images",
    "make_dataset",
    "Prepared",
    "prepare",
    "GET_DATA_HELP",
    "DatasetNotFoundError",
    "ImageRecord",
    "ScanReport",
    "scan",
    "labels_of",
    "make_splits",
    "split_counts",
]
