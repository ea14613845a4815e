"""The lesion-removal test and counterfactual training images: removal, controls, scores, GIN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tumorlens.config import CLASSES, load_config, settings_fingerprint
from tumorlens.data.lesion import (
    METHODS,
    control_region,
    control_shares,
    counterfactual_set,
    dilate,
    head_mask,
    remove,
)
from tumorlens.evaluation.lesion import make_removal_set, removal_scores, wilson

NO = CLASSES.index("notumor")


def _slice(size: int = 64, lesion: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A head (grey disc with texture) and, optionally, a bright blob: (image uint8 (S, S, 3), blob mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2
    img = np.where(head, 90 + rng.normal(0, 6, (size, size)), 0)
    blob = (yy - 0.4 * size) ** 2 + (xx - 0.6 * size) ** 2 < (0.08 * size) ** 2
    if lesion:
        img = np.where(blob, 230, img)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2), blob


@pytest.mark.parametrize("method", METHODS)
def test_remove_fills_only_the_region_and_erases_the_blob(method):
    img, blob = _slice()
    region = dilate(blob, 0.05)
    out = remove(img, region, method)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[~region], img[~region])  # nothing outside the region moves
    assert out[blob].mean() < 140  # the bright lesion is gone: filled with tissue-like grey
    assert np.array_equal(remove(img, np.zeros_like(blob), method), img)


def test_remove_and_dilate_check_their_arguments():
    img, blob = _slice()
    with pytest.raises(ValueError, match="method"):
        remove(img, blob, "blur")
    with pytest.raises(ValueError, match="uint8"):
        remove(img.astype(np.float32), blob)
    with pytest.raises(ValueError, match="region"):
        remove(img, blob[:10])
    with pytest.raises(ValueError, match="fraction"):
        dilate(blob, -0.1)
    assert dilate(blob, 0.05).sum() > blob.sum() and dilate(blob, 0.0).sum() == blob.sum()
    assert dilate(blob, 0.001).sum() > blob.sum()  # at least one pixel


def test_control_region_same_shape_inside_the_head_away_from_the_lesion():
    img, blob = _slice()
    region = dilate(blob, 0.05)
    head = head_mask(img)
    ctrl = control_region(region, head, np.random.default_rng(1))
    assert ctrl is not None and ctrl.sum() == region.sum()
    assert not (ctrl & region).any() and (ctrl & head).sum() >= 0.95 * ctrl.sum()
    ys, xs = np.nonzero(region)
    cy, cx = np.nonzero(ctrl)
    assert (cy - cy.min()).tolist() == (ys - ys.min()).tolist() and (cx - cx.min()).tolist() == (xs - xs.min()).tolist()
    # a region as large as the head has nowhere to go
    assert control_region(head, head, np.random.default_rng(0)) is None
    assert control_region(np.zeros_like(head), head, np.random.default_rng(0)) is None


def test_wilson_interval():
    w = wilson(8, 10)
    assert w["value"] == 0.8 and 0.44 < w["lo"] < 0.5 and 0.94 < w["hi"] < 0.97
    assert wilson(0, 0)["value"] is None
    assert wilson(0, 50)["lo"] == 0.0 and wilson(50, 50)["hi"] == 1.0


def test_removal_scores_count_what_a_model_does():
    imgs, masks = zip(*[_slice(seed=s) for s in range(6)])
    images, masks = np.stack(imgs), np.stack(masks)
    y = [0, 1, 3, 0, 1, 3]
    views = ["axial", "axial", "coronal", "sagittal", "axial", "coronal"]
    rs = make_removal_set(images, masks, y, views, [f"i{k}" for k in range(6)], methods=("telea", "ring"))
    assert rs.methods == ["telea", "ring"] and rs.has_control.all()
    names = [n for n, _ in rs.versions()]
    assert names == ["original", "removed:telea", "control:telea", "removed:ring", "control:ring"]

    def lesion_reader(x):  # a model that rests on the lesion: bright blob -> its class, none -> no tumour
        p = np.zeros((len(x), 4))
        bright = (x[..., 0] > 200).reshape(len(x), -1).any(axis=1)
        for i, b in enumerate(bright):
            p[i, y[i] if b else NO] = 1.0
        return p

    probs = {n: lesion_reader(x) for n, x in rs.versions()}
    r = removal_scores(rs, probs)
    o = r["overall"]
    assert o["original"]["correct"]["value"] == 1.0 and o["original"]["notumor"]["value"] == 0.0
    for m in ("telea", "ring"):
        assert o[m]["removed_notumor"]["value"] == 1.0
        assert o[m]["control_notumor"]["value"] == 0.0 and o[m]["control_kept"]["value"] == 1.0
    assert set(r["per_class"]) == {"glioma", "meningioma", "pituitary"}
    assert r["per_view"]["axial"]["n"] == 3
    json.dumps(r)  # plain data

    def look_reader(x):  # a model that reads the scan's look: always the true class
        p = np.zeros((len(x), 4))
        p[np.arange(len(x)), y] = 1.0
        return p

    r2 = removal_scores(rs, {n: look_reader(x) for n, x in rs.versions()})
    assert r2["overall"]["telea"]["removed_notumor"]["value"] == 0.0
    with pytest.raises(ValueError, match="missing"):
        removal_scores(rs, {"original": probs["original"]})


def test_control_shares_balance_the_removed_share_per_class():
    t, n = control_shares(n_notumor=100, n_counterfactual=50, notumor_share=0.5)
    assert n == 0.5 and t == pytest.approx((50 + 50) / 150)
    assert control_shares(100, 50, 0.0) == (0.0, 0.0)
    assert 0.99 < control_shares(10, 1000, 0.5)[0] <= 1.0  # many counterfactuals: nearly every tumour image


def test_counterfactual_set_adds_no_tumour_copies_and_balanced_controls():
    imgs, blobs, labels, lesions = [], [], [], {}
    for k in range(24):
        cls = k % 4
        img, blob = _slice(lesion=cls != NO, seed=k)
        imgs.append(img)
        labels.append(cls)
        if cls != NO:
            lesions[k] = blob
    images, y = np.stack(imgs), np.array(labels)
    x2, y2, rec = counterfactual_set(images, y, lesions, notumor=NO, share=1.0, dilation=0.05, control=0.5, seed=3)
    assert rec["counterfactuals"] == len(lesions) == len(x2) - len(images)
    assert (y2[len(images) :] == NO).all() and np.array_equal(y2[: len(images)], y)
    # every counterfactual lost its bright lesion
    assert (x2[len(images) :, ..., 0] > 200).reshape(len(lesions), -1).sum(axis=1).max() == 0
    # controls keep the label and the lesion; some images of every class got one
    changed = (x2[: len(images)] != images).reshape(len(images), -1).any(axis=1)
    assert changed.any() and set(rec["controls"]) <= {str(c) for c in range(4)}
    for i in np.flatnonzero(changed & (y != NO)):
        assert (x2[i, ..., 0] > 200).any()  # a control never removes the lesion
    x3, y3, rec3 = counterfactual_set(images, y, lesions, notumor=NO, share=0.5, control=0.0, seed=3)
    assert rec3["counterfactuals"] == round(0.5 * len(lesions)) and np.array_equal(x3[: len(images)], images)
    with pytest.raises(ValueError, match="no-tumour"):
        counterfactual_set(images, y, {2: blobs[0] if blobs else lesions[1]}, notumor=NO)


def test_counterfactual_settings_leave_the_fingerprint_alone_at_their_default():
    cfg = load_config("smoke")
    fp = settings_fingerprint(cfg, ["train", "augment"])
    assert "counterfactual" not in fp["train"] and "gin" not in fp["augment"]
    on = load_config("smoke", overrides={"train.counterfactual.share": 0.5, "augment.gin": 0.5})
    fp2 = settings_fingerprint(on, ["train", "augment"])
    assert fp2["train"]["counterfactual"]["share"] == 0.5 and fp2["augment"]["gin"] == 0.5


def test_training_refuses_counterfactuals_without_masks(tmp_path):
    from tumorlens.training.run import train_run

    cfg = load_config("smoke", overrides={"train.counterfactual.share": 0.5})
    with pytest.raises(ValueError, match="lesion masks"):
        train_run(cfg, run_dir=tmp_path / "run", show_progress=False, log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_gin_remaps_contrast_keeps_background_and_serialises(tmp_path):
    import keras

    from tumorlens.data.intensity import RandomConvIntensity

    img, _ = _slice(size=32)
    x = np.repeat(img[None].astype(np.float32), 4, axis=0)
    layer = RandomConvIntensity(p=1.0, seed=0)
    y = np.asarray(layer(x, training=True))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    bg = img[..., 0] == 0
    assert np.allclose(y[:, bg], 0)  # the background stays black
    assert not np.allclose(y, x)  # the contrast moved
    assert np.allclose(y[..., 0], y[..., 2])  # grey stays grey
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    assert np.array_equal(np.asarray(RandomConvIntensity(p=0.0)(x, training=True)), x)
    with pytest.raises(ValueError, match="p must"):
        RandomConvIntensity(p=2)
    m = keras.Sequential([keras.Input((32, 32, 3)), RandomConvIntensity(p=0.5, seed=1)])
    m.save(tmp_path / "gin.keras")
    back = keras.models.load_model(tmp_path / "gin.keras")
    assert back.layers[0].get_config()["p"] == 0.5


def test_prefix_cache_keys_share_the_images_across_augmentations(tmp_path):
    """The images themselves (view 0, validation, test) are cached once whatever the augmentation; the
    augmented views are keyed by it (GIN, inversion, ... included)."""
    from types import SimpleNamespace

    from tumorlens.training.prefix_cache import cache_keys

    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    rec = SimpleNamespace(rel="Training/glioma/a.png", path=f)
    prep = SimpleNamespace(splits={"train": [rec], "val": [rec], "test": [rec]})
    base = cache_keys(load_config("smoke"), prep)
    gin = cache_keys(load_config("smoke", overrides={"augment.gin": 0.5}), prep)
    rot = cache_keys(load_config("smoke", overrides={"augment.rotation": 0.2}), prep)
    assert {k: base[k] for k in ("train", "val", "test")} == {k: gin[k] for k in ("train", "val", "test")}
    assert len({base["train_aug"], gin["train_aug"], rot["train_aug"]}) == 3


def test_transplant_pastes_a_lesion_inside_a_healthy_head():
    from tumorlens.data.lesion import transplant_lesion

    src, blob = _slice(seed=1)
    healthy, _ = _slice(lesion=False, seed=2)
    out = transplant_lesion(src, blob, healthy, np.random.default_rng(0))
    assert out is not None and out.shape == healthy.shape and out.dtype == np.uint8
    changed = (out != healthy).any(axis=-1)
    assert changed.any() and (changed & head_mask(healthy)).sum() == changed.sum()  # only inside the head
    assert out[changed].mean() > healthy[changed].mean() + 40  # a bright lesion now
    assert transplant_lesion(src, np.zeros_like(blob), healthy, np.random.default_rng(0)) is None
    imgs = np.stack([src, healthy])
    x, y, rec = counterfactual_set(imgs, np.array([0, NO]), {0: blob}, notumor=NO, control=0.0, transplant=1.0)
    assert rec["transplants"] == 1 and rec["counterfactuals"] == 1 and y.tolist() == [0, NO, NO, 0]


def test_counterfactual_training_end_to_end_on_phantoms(tmp_path):
    """train_run with counterfactuals made from the phantoms' own lesion masks (standing in for the published
    weak masks), the validation split's counterfactuals choosing the epochs: the run records what was made."""
    import cv2

    from tumorlens.data.prepared import prepare
    from tumorlens.training.run import train_run

    cfg = load_config(
        "smoke",
        overrides={
            "paths.runs": str(tmp_path),
            "train.counterfactual.share": 1.0,
            "train.counterfactual.validation": True,
            "train.counterfactual.transplant": 0.5,
        },
    )
    prep = prepare(cfg, show_progress=False)

    class Masks:  # the interface train_run reads (tumorlens.experiments.counterfactual.LesionMasks)
        def __init__(self, split):
            self.split, self.source = split, {"from": "phantom masks", "split": split}

        def trusted(self, keep, score):
            out = {}
            for i, r in enumerate(prep.splits[self.split]):
                if r.cls == "notumor":
                    continue
                m = cv2.imread(str(prep.root / "masks" / r.rel), cv2.IMREAD_GRAYSCALE)
                out[i] = cv2.resize(m, (cfg.data.image_size,) * 2, interpolation=cv2.INTER_NEAREST) > 127
            return out

    summary = train_run(
        cfg, prep, show_progress=False, log=lambda *_: None, lesion_masks=Masks("train"), val_lesion_masks=Masks("val")
    )
    rec = summary["counterfactual"]
    n_tumour = int((prep.labels("train") != NO).sum())
    assert rec["counterfactuals"] == n_tumour and summary["n_train"] > len(prep.splits["train"])
    assert rec["validation"]["counterfactuals"] > 0 and rec["transplants"] >= 0
    assert summary["n_val"] == len(prep.splits["val"])  # the validation predictions stay the originals'


def test_counterfactual_masks_take_the_smallest_level_set_whose_removal_flips_the_call():
    from tumorlens.explain.counterfactual_masks import LEVELS, candidate_regions, counterfactual_masks

    img, blob = _slice()
    yy, xx = np.mgrid[:64, :64]
    cmap = np.exp(-((yy - 0.4 * 64) ** 2 + (xx - 0.6 * 64) ** 2) / (2 * 6.0**2)).astype(np.float32)  # peaks on the blob
    regions = candidate_regions(img, cmap)
    assert regions.shape == (len(LEVELS), 64, 64) and regions.dtype == bool
    assert all((regions[k] <= regions[k + 1]).all() for k in range(len(LEVELS) - 1))  # nested, growing
    assert not (regions & ~head_mask(img)).any()  # inside the head
    assert not candidate_regions(img, np.zeros_like(cmap)).any()

    def judge(x):
        """No tumour once the blob's pixels are no longer bright (the lesion is gone), else glioma."""
        gone = np.array([v[blob].mean() < 140 for v in x])
        p = np.zeros((len(x), 4))
        p[gone, NO], p[~gone, 0] = 0.9, 0.9
        return p

    fallback = np.zeros((2, 64, 64), bool)
    fallback[1, :4, :4] = True
    masks, level, passes = counterfactual_masks(
        np.stack([img, img]), np.stack([cmap, cmap[::-1]]), judge, fallback=fallback
    )
    assert level[0] >= 0 and masks[0].sum() == regions[level[0]].sum()  # a level set of the map
    assert (
        masks[0][blob].any()
        and not (masks[0] & ~dilate(blob, 0.1)).any()
        and (level[0] == 0 or judge(remove(img, dilate(regions[level[0] - 1], 0.03))[None])[0, NO] < 0.5)
    )
    assert level[1] == -1 and np.array_equal(masks[1], fallback[1])  # the mirrored map misses: the fallback stands
    assert passes == 2 * len(LEVELS)
    with pytest.raises(ValueError, match="threshold"):
        counterfactual_masks(img[None], cmap[None], judge, threshold=1.0)
    with pytest.raises(ValueError, match=r"\(1, 64, 64, 3\)"):
        counterfactual_masks(img[None], cmap[None, :32], judge)
    with pytest.raises(ValueError, match="levels"):
        candidate_regions(img, cmap, levels=(1.5,))
