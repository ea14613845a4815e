"""The weak-mask network (tumorlens.explain.refine) and the method comparison table, on tiny inputs."""

import numpy as np
import pytest

from tumorlens.config import CLASSES
from tumorlens.explain.refine import (
    DECODER_STRIDES,
    TUMOUR_CLASSES,
    _targets,
    build_decoder,
    build_segmenter,
    encoder_features,
    load_segmenter,
    mask_and_ignore,
    mask_channels,
    mask_probabilities,
    masked_dice_bce_loss,
    network_mask,
    pseudo_masks,
    train_decoder,
)
from tumorlens.explain.scoring import best_row, method_table
from tumorlens.explain.weak_masks import SegmentParams
from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
from tumorlens.models.classifier import build_classifier


@pytest.fixture(scope="module")
def tiny_classifier():
    return build_classifier("efficientnet_lite0", ("sbr",), image_size=64, weights="none")


def test_decoder_shapes_and_argument_checks():
    dec = build_decoder([(2, 2, 8), (4, 4, 6), (8, 8, 4), (16, 16, 3)], width=4)
    out = dec([np.zeros((3, *s), "float32") for s in [(2, 2, 8), (4, 4, 6), (8, 8, 4), (16, 16, 3)]])
    assert tuple(out.shape) == (3, 16, 16, 1) and all(lay.name.startswith("seg_") for lay in dec.layers)
    with pytest.raises(ValueError, match="width=2"):
        build_decoder([(2, 2, 8), (4, 4, 6), (8, 8, 4), (16, 16, 3)], width=2)
    with pytest.raises(ValueError, match="4 feature shapes"):
        build_decoder([(2, 2, 8)])
    # a side that is not a multiple of 32 (EfficientNet-Lite1 at 240 px: 8, 15, 30, 60)
    odd = [(8, 8, 8), (15, 15, 6), (30, 30, 4), (60, 60, 3)]
    out = build_decoder(odd, width=4)([np.zeros((1, *s), "float32") for s in odd])
    assert tuple(out.shape) == (1, 60, 60, 1)
    with pytest.raises(ValueError, match="twice the previous"):
        build_decoder([(8, 8, 8), (12, 12, 6), (24, 24, 4), (48, 48, 3)], width=4)


def test_a_segmenter_at_a_side_not_a_multiple_of_32_outlines_at_its_input_size():
    """EfficientNet-Lite1 runs at its native 240 px; 80 px has the same odd finer maps (3, 5, 10, 20)."""
    clf = build_classifier("efficientnet_lite1", (), image_size=80, weights="none")
    seg = build_segmenter(clf, "efficientnet_lite1", width=4)
    x = np.random.default_rng(0).integers(0, 255, (2, 80, 80, 3)).astype("uint8")
    probs, maps = mask_probabilities(seg, x, flip=True)
    assert probs.shape == (2, len(CLASSES)) and maps.shape == (2, 80, 80)


def test_segmenter_classifies_as_the_classifier_and_survives_a_keras_round_trip(tiny_classifier, tmp_path):
    seg = build_segmenter(tiny_classifier, "efficientnet_lite0", width=4)
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype("uint8")
    probs, maps = mask_probabilities(seg, x)
    assert probs.shape == (2, len(CLASSES)) and maps.shape == (2, 64, 64) and 0 <= maps.min() and maps.max() <= 1
    assert np.allclose(probs, tiny_classifier.predict(x.astype("float32"), verbose=0), atol=1e-5)
    seg.save(tmp_path / "segmenter.keras")
    again = load_segmenter(tmp_path)
    p2, m2 = mask_probabilities(again, x)
    assert np.allclose(p2, probs, atol=1e-5) and np.allclose(m2, maps, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="segmenter.keras"):
        load_segmenter(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="'vit'"):
        build_segmenter(tiny_classifier, "vit")


def test_pseudo_masks_leave_no_tumour_images_empty(tiny_classifier):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (4, 64, 64, 3)).astype("uint8")
    labels = np.array([CLASSES.index(c) for c in ("glioma", "notumor", "pituitary", "notumor")])
    pm = pseudo_masks(tiny_classifier, x, labels, ("top_activation",), SegmentParams(), show_progress=False)
    assert pm.masks.shape == (4, 64, 64) and pm.masks.dtype == bool
    assert not pm.masks[1].any() and not pm.masks[3].any()
    with pytest.raises(ValueError, match="labels"):
        pseudo_masks(tiny_classifier, x, labels[:2], ("top_activation",), SegmentParams())


def test_ignored_pixels_are_where_the_two_masks_of_a_map_disagree(tiny_classifier):
    """``ignore="disagree"``: the same pseudo-masks as without it, plus the pixels where the binarised map and
    map + GrabCut disagree (none for a no-tumour image); an unknown rule is an error naming it."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (3, 64, 64, 3)).astype("uint8")
    labels = np.array([CLASSES.index(c) for c in ("glioma", "notumor", "meningioma")])
    args = (tiny_classifier, x, labels, ("top_activation",), SegmentParams())
    plain = pseudo_masks(*args, show_progress=False)
    pm = pseudo_masks(*args, ignore="disagree", show_progress=False)
    assert plain.ignore is None and plain.ignored_fraction is None
    assert np.array_equal(pm.masks, plain.masks) and pm.ignore.shape == pm.masks.shape and not pm.ignore[1].any()
    cam = np.zeros((64, 64), np.float32)
    cam[20:44, 20:44] = 1.0
    image = np.full((64, 64, 3), 120, np.uint8)
    mask, ignore = mask_and_ignore(image, cam, "glioma", SegmentParams())
    assert mask.dtype == bool and ignore.shape == mask.shape
    assert not mask_and_ignore(image, cam, "notumor", SegmentParams())[1].any()
    with pytest.raises(ValueError, match="received ignore='some'"):
        pseudo_masks(*args, ignore="some")


def test_the_masked_loss_takes_nothing_from_ignored_pixels():
    """A wrong prediction on a weight-0 pixel changes nothing; all weights 1 gives a finite loss that grows
    with the error; the targets carry one weight channel per output channel."""
    import keras

    t = np.zeros((2, 4, 4, 1), np.float32)
    t[:, 1:3, 1:3] = 1.0
    w = np.ones_like(t)
    w[:, 0, 0] = 0.0
    good = np.clip(t, 0.05, 0.95)
    bad_on_ignored = good.copy()
    bad_on_ignored[:, 0, 0] = 0.95  # wrong, but ignored
    y = np.concatenate([t, w], -1)
    loss = lambda p: keras.ops.convert_to_numpy(masked_dice_bce_loss(y, p))  # noqa: E731
    assert np.allclose(loss(good), loss(bad_on_ignored))
    bad = good.copy()
    bad[:, 3, 3] = 0.95  # wrong and counted
    assert (loss(bad) > loss(good)).all() and np.isfinite(loss(good)).all()
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:8] = True
    ignore = np.zeros_like(masks)
    ignore[0, :8, :] = True
    y2 = _targets(masks, 4, ignore=ignore)
    assert y2.shape == (2, 4, 4, 2) and np.allclose(y2[1, ..., 1], 1.0) and np.allclose(y2[0, :2, :, 1], 0.0)


def test_the_decoder_trains_with_ignored_pixels(tiny_classifier):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 255, (8, 64, 64, 3)).astype("uint8")
    feats = encoder_features(tiny_classifier, "efficientnet_lite0", x, show_progress=False)
    masks = np.zeros((8, 64, 64), bool)
    masks[:, 16:40, 8:32] = True
    ignore = np.zeros_like(masks)
    ignore[:, 12:44, 4:36] = True
    ignore[:, 18:38, 10:30] = False  # the band around the square is ignored
    dec, hist = train_decoder(feats, masks, epochs=2, width=8, ignore=ignore, show_progress=False)
    assert dec.outputs[0].shape[-1] == 1 and len(hist) == 2 and np.isfinite(hist[-1]["loss"])
    with pytest.raises(ValueError, match="ignore must have the masks' shape"):
        train_decoder(feats, masks, epochs=1, ignore=ignore[:3])


def test_the_decoder_learns_a_mask_it_is_shown(tiny_classifier):
    """On cached features of 16 images whose pseudo-mask is a fixed square, the loss falls and the
    predicted probability is higher inside the square than outside it."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (16, 64, 64, 3)).astype("uint8")
    feats = encoder_features(tiny_classifier, "efficientnet_lite0", x, show_progress=False)
    assert [f.shape[1] for f in feats] == [64 // s for s in DECODER_STRIDES] and feats[0].dtype == np.float16
    masks = np.zeros((16, 64, 64), bool)
    masks[:, 16:40, 8:32] = True
    dec, hist = train_decoder(feats, masks, epochs=40, width=8, lr=3e-3, flip=False, show_progress=False)
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]
    seg = build_segmenter(tiny_classifier, "efficientnet_lite0", dec)
    _, maps = mask_probabilities(seg, x)
    assert maps[:, 18:38, 10:30].mean() > maps[:, 44:, 40:].mean() + 0.3
    with pytest.raises(ValueError, match="one row per mask"):
        train_decoder(feats, masks[:3], epochs=1)


def test_a_per_class_decoder_has_a_map_per_tumour_class_and_reads_the_right_one():
    """Targets put each pseudo-mask in its labelled class's channel (no tumour: all empty); the map read
    is the given class's, else the predicted class's, else (no-tumour prediction) the likeliest tumour's."""
    assert TUMOUR_CLASSES == ("glioma", "meningioma", "pituitary")
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    labels = np.array([CLASSES.index(c) for c in ("glioma", "notumor", "pituitary")])
    t = _targets(masks, 4, labels)
    assert t.shape == (3, 4, 4, 3) and t[0, ..., 0].sum() == 4 and t[0, ..., 1:].sum() == 0
    assert t.sum(axis=(1, 2, 3))[1] == 0 and t[2, ..., 2].sum() == 4 and t[2, ..., :2].sum() == 0
    assert _targets(masks, 4).shape == (3, 4, 4, 1)
    low = np.random.default_rng(0).random((3, 4, 4, 3)).astype(np.float32)
    probs = np.zeros((3, len(CLASSES)), np.float32)
    probs[0, CLASSES.index("glioma")] = 1
    probs[1, CLASSES.index("notumor")], probs[1, CLASSES.index("pituitary")] = 0.7, 0.2
    probs[2, CLASSES.index("meningioma")] = 1
    got = mask_channels(probs, low)
    assert np.array_equal(got, np.stack([low[0, ..., 0], low[1, ..., 2], low[2, ..., 1]]))
    given = mask_channels(probs, low, [CLASSES.index("pituitary")] * 3)
    assert np.array_equal(given, low[..., 2])
    assert np.array_equal(mask_channels(probs, low[..., :1]), low[..., 0])  # one map: the map
    with pytest.raises(ValueError, match="outputs=2"):
        build_decoder([(2, 2, 8), (4, 4, 6), (8, 8, 4), (16, 16, 3)], width=4, outputs=2)


def test_a_per_class_decoder_learns_where_each_class_has_its_mask(tiny_classifier):
    """Bright images labelled glioma with a square top left, dark ones labelled pituitary with a square
    bottom right: each image's own class's map is higher in its own square than in the other."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 60, (16, 64, 64, 3)).astype("uint8")
    x[:8] += 160
    labels = np.array([CLASSES.index("glioma")] * 8 + [CLASSES.index("pituitary")] * 8)
    masks = np.zeros((16, 64, 64), bool)
    masks[:8, 4:24, 4:24] = True
    masks[8:, 40:60, 40:60] = True
    feats = encoder_features(tiny_classifier, "efficientnet_lite0", x, show_progress=False)
    dec, _ = train_decoder(feats, masks, epochs=40, width=8, lr=3e-3, flip=False, labels=labels, show_progress=False)
    assert dec.output.shape[-1] == 3
    seg = build_segmenter(tiny_classifier, "efficientnet_lite0", dec)
    _, maps = mask_probabilities(seg, x, class_index=labels)
    assert maps[:8, 6:22, 6:22].mean() > maps[:8, 42:58, 42:58].mean() + 0.3
    assert maps[8:, 42:58, 42:58].mean() > maps[8:, 6:22, 6:22].mean() + 0.3


def test_network_mask_is_empty_for_a_no_tumour_prediction():
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:28, 4:28] = 120
    prob = np.zeros((32, 32), np.float32)
    prob[10:20, 10:20] = 0.9
    assert network_mask(img, prob, "glioma", 0.5).sum() == 100
    assert not network_mask(img, prob, "notumor", 0.5).any()


def test_bootstrap_mean_and_paired_difference():
    v = np.r_[np.zeros(50), np.ones(50)]
    r = bootstrap_mean(v, seed=1)
    assert r["value"] == 0.5 and r["lo"] < 0.5 < r["hi"] and r["n"] == 100
    d = paired_mean_diff(v, v)
    assert d["diff"] == 0 and d["lo"] == 0 == d["hi"]
    d = paired_mean_diff(np.ones(100), v)
    assert d["diff"] == 0.5 and 0.35 < d["lo"] < 0.5 < d["hi"] < 0.65
    assert np.isnan(bootstrap_mean([])["value"])
    with pytest.raises(ValueError, match="same images"):
        paired_mean_diff([1, 2], [1])


def _rows(dice_cam, dice_gc, pointing, centre):
    cls = ["glioma", "meningioma"]
    return [
        {
            "id": f"i{k}",
            "class": cls[k % 2],
            "dice_cam": dc,
            "iou_cam": dc / (2 - dc),
            "dice_grabcut": dg,
            "iou_grabcut": dg / (2 - dg),
            "pointing": p,
            "pointing_near": p,
            "centre_pointing": c,
        }
        for k, (dc, dg, p, c) in enumerate(zip(dice_cam, dice_gc, pointing, centre))
    ]


def test_method_table_rows_differences_and_choice_on_the_tuning_half():
    n = 40
    per_map = {
        "gradcam@top": _rows([0.1] * n, [0.1] * n, [False] * n, [True] * (n // 4) + [False] * (3 * n // 4)),
        "layercam@fusion": _rows([0.4] * n, [0.6] * n, [True] * n, [True] * (n // 4) + [False] * (3 * n // 4)),
    }
    table = method_table(
        per_map,
        tune_scores={"gradcam@top": {"cam": 0.1, "grabcut": 0.12}, "layercam@fusion": {"cam": 0.4, "grabcut": 0.55}},
        latency_ms={"gradcam@top": {"cam": 5.0, "grabcut": 20.0}},
    )
    assert [(r["map"], r["mask"]) for r in table] == [
        ("gradcam@top", "cam"),
        ("gradcam@top", "grabcut"),
        ("layercam@fusion", "cam"),
        ("layercam@fusion", "grabcut"),
    ]
    paper, best = table[1], table[3]
    assert paper["paper"] and not any(r["paper"] for r in table if r is not paper)
    assert paper["dice_vs_paper"] == 0 and best["dice_vs_paper"] == pytest.approx(0.5)
    assert best["pointing"] == 1 and best["pointing_vs_centre"] == pytest.approx(0.75)
    assert best["pointing_vs_centre_lo"] > 0 and paper["pointing_vs_centre_hi"] < 0
    assert best["dice_glioma"] == pytest.approx(0.6) and best["ms_per_image"] is None and paper["ms_per_image"] == 20
    assert best_row(table) is best
    from tumorlens.config import load_config
    from tumorlens.explain.scoring import adopted

    auto = load_config("smoke", overrides={"segment.mask": "auto"}).segment
    assert adopted(auto, table) == ("layercam@fusion", "grabcut")
    with pytest.raises(ValueError, match="auto"):
        adopted(auto)
    fixed = load_config("smoke", overrides={"segment.mask": "network+grabcut"}).segment
    assert adopted(fixed, table) == ("network", "grabcut")
    with pytest.raises(ValueError, match="paper's map"):
        method_table({"layercam@fusion": per_map["layercam@fusion"]})
    with pytest.raises(ValueError, match="other items"):
        method_table({**per_map, "x": per_map["gradcam@top"][:-1]})
